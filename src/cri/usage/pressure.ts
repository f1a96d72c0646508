// Pressure stall information (PSI) of a cgroup: the cpu.pressure, memory.pressure and
// io.pressure files of its unified (v2) hierarchy. A pure v1 host has none; a hybrid one
// (v1 controllers plus an empty unified hierarchy, as here) has them wherever the runtime
// placed the task in the unified hierarchy too, and the kernel runs with PSI on.
// The kernel counts stall time in microseconds; the CRI's PsiData.Total is nanoseconds
// (containerd multiplies by 1000 too).
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { PsiData, PsiStats } from "../../gen/cri/runtime/v1/api.js";
import type { PSIStats as V2Psi } from "../../gen/cgroups/stats/v2/metrics.js";

export type PressureResource = "cpu" | "memory" | "io";

/** Parses a pressure file ("some avg10=0.12 avg60=0.00 avg300=0.00 total=1234", then "full ..."). */
export function parsePressure(text: string): PsiStats | undefined {
  const out: PsiStats = { Full: undefined, Some: undefined };
  for (const line of text.split("\n")) {
    const [kind, ...fields] = line.trim().split(/\s+/);
    if (kind !== "some" && kind !== "full") continue;
    const f = new Map(fields.map((x) => x.split("=") as [string, string]));
    const total = f.get("total");
    if (total === undefined || !/^\d+$/.test(total)) continue;
    const data: PsiData = {
      Total: BigInt(total) * 1000n,
      Avg10: Number(f.get("avg10") ?? 0),
      Avg60: Number(f.get("avg60") ?? 0),
      Avg300: Number(f.get("avg300") ?? 0),
    };
    if (kind === "some") out.Some = data;
    else out.Full = data;
  }
  return out.Some || out.Full ? out : undefined;
}

/** The CRI form of a shim's cgroup v2 PSI (microsecond totals). */
export function psiFromV2(p: V2Psi | undefined): PsiStats | undefined {
  if (!p || (!p.some && !p.full)) return undefined;
  const data = (d: V2Psi["some"]): PsiData | undefined =>
    d && { Total: d.total * 1000n, Avg10: d.avg10, Avg60: d.avg60, Avg300: d.avg300 };
  return { Some: data(p.some), Full: data(p.full) };
}

export type Pressure = Partial<Record<PressureResource, PsiStats>>;

/** The PSI of the unified cgroup directory `dir`; a resource without its file is left out. */
export async function readPressure(dir: string | undefined): Promise<Pressure> {
  const out: Pressure = {};
  if (!dir) return out;
  for (const r of ["cpu", "memory", "io"] as const) {
    const text = await readFile(join(dir, `${r}.pressure`), "utf8").catch(() => undefined);
    const psi = text === undefined ? undefined : parsePressure(text);
    if (psi) out[r] = psi;
  }
  return out;
}
