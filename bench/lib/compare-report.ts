// The side-by-side table: one row per CRI call (p50 / p90 of the same Go client's samples) or
// memory figure, a column per runtime, berth's ratio to containerd 2.4's p50, and the floor.
// Also the generated section of bench/RESULTS.md.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { percentile } from "./stats.js";

export const RUNTIMES = ["containerd 2.4", "containerd 1.6", "berth"] as const;
export type RuntimeName = (typeof RUNTIMES)[number];

export interface SideRow {
  row: string;
  unit: "ms" | "MiB";
  /** per runtime: [p50, p90] for times, [value] for memory; null when not measured */
  values: Partial<Record<RuntimeName, number[] | null>>;
  /** the floor's p50 and what it is */
  floor?: { value: number; what: string } | null;
}

export interface MemPoint {
  daemonPssKiB: number;
  daemonRssKiB: number;
  shimPssKiB?: number;
  shimProcs?: number;
}

export interface RuntimeResult {
  samples: Record<string, number[]>;
  listed: number;
  memory: Record<string, MemPoint>;
}

export interface Floors {
  runcRunMs: number[];
  runcExecMs: number[];
  runcDeleteMs: number[];
  cniAddMs: number[];
  cniDelMs: number[];
  gzipSmallMs: number[];
  gzipBigMs: number[];
}

export interface Labels {
  listContainers: number;
  /** untimed rounds before the reads' second timing; 0: no second timing */
  warmReads: number;
  churn: number;
  concurrent: number[];
  smallMiB: number;
  bigMiB: number;
}

const p = (xs: number[] | undefined): number[] | null =>
  xs && xs.length ? [percentile(xs, 50), percentile(xs, 90)] : null;
const p50 = (xs: number[]) => percentile(xs, 50);
/** The reads timed twice; the second timing's rows are the client's "<read> warm". */
const READS = ["ContainerStatus", "PodSandboxStatus", "ImageStatus", "ListImages", "Version"];

/** Builds the rows from each runtime's results (null: that runtime failed). */
export function sideRows(
  results: Partial<Record<RuntimeName, RuntimeResult | null>>,
  floors: Floors | null,
  l: Labels,
): SideRow[] {
  const time = (row: string, key: string, floor?: SideRow["floor"]): SideRow => ({
    row,
    unit: "ms",
    values: Object.fromEntries(RUNTIMES.map((r) => [r, p(results[r]?.samples[key])])),
    floor: floor ?? null,
  });
  const f = floors;
  const mib = (kib: number | undefined) => (kib === undefined ? null : [kib / 1024]);
  const mem = (row: string, pick: (r: RuntimeResult) => number | undefined): SideRow => ({
    row,
    unit: "MiB",
    values: Object.fromEntries(RUNTIMES.map((r) => [r, results[r] ? mib(pick(results[r]!)) : null])),
  });
  const rows: SideRow[] = [
    time(
      "RunPodSandbox",
      "RunPodSandbox",
      f && { value: p50(f.runcRunMs) + p50(f.cniAddMs), what: "runc run -d + CNI ADD" },
    ),
    time("StopPodSandbox", "StopPodSandbox", f && { value: p50(f.cniDelMs), what: "CNI DEL" }),
    time("RemovePodSandbox", "RemovePodSandbox"),
    time("CreateContainer", "CreateContainer"),
    time("StartContainer", "StartContainer", f && { value: p50(f.runcRunMs), what: "runc run -d" }),
    time("StopContainer", "StopContainer", f && { value: p50(f.runcDeleteMs), what: "runc delete -f" }),
    time("RemoveContainer", "RemoveContainer"),
    time("ExecSync `true`", "ExecSync", f && { value: p50(f.runcExecMs), what: "runc exec" }),
    time("ContainerStatus", "ContainerStatus"),
    time("PodSandboxStatus", "PodSandboxStatus"),
    time(`ListContainers, ${l.listContainers} containers`, "ListContainers"),
    time("ImageStatus", "ImageStatus"),
    time("ListImages", "ListImages"),
    time("Version, the gRPC round trip", "Version"),
    ...(l.warmReads > 0 ? READS.map((read) => time(`${read}, after ${l.warmReads} more rounds`, `${read} warm`)) : []),
    time(
      `PullImage ${l.smallMiB} MiB`,
      "PullImage small",
      f && { value: p50(f.gzipSmallMs), what: "gzip -d of its layer" },
    ),
    time(`PullImage ${l.bigMiB} MiB`, "PullImage big", f && { value: p50(f.gzipBigMs), what: "gzip -d of its layers" }),
    ...l.concurrent.map((n) => time(`${n} pods started at once, wall`, `${n} pods started at once`)),
    mem("daemon PSS idle", (r) => r.memory.idle?.daemonPssKiB),
    mem(`daemon PSS after a ${l.churn}-pod churn`, (r) => r.memory["after-churn"]?.daemonPssKiB),
    ...l.concurrent.flatMap((n) => [
      mem(`shims PSS with ${n} pods`, (r) => r.memory[`pods-${n}`]?.shimPssKiB),
      mem(`total PSS with ${n} pods (daemon + shims)`, (r) => {
        const m = r.memory[`pods-${n}`];
        return m && m.shimPssKiB !== undefined ? m.daemonPssKiB + m.shimPssKiB : undefined;
      }),
    ]),
  ];
  return rows;
}

const num = (v: number): string =>
  !Number.isFinite(v)
    ? "-"
    : v >= 1000
      ? v.toFixed(0)
      : v >= 100
        ? v.toFixed(0)
        : v >= 10
          ? v.toFixed(1)
          : v.toFixed(2);

function cell(v: number[] | null | undefined): string {
  if (!v) return "-";
  return v.length > 1 ? `${num(v[0]!)} / ${num(v[1]!)}` : num(v[0]!);
}

/** berth's first figure (p50) over containerd 2.4's. */
export function berthRatio(r: SideRow): number | null {
  const b = r.values.berth?.[0];
  const c = r.values["containerd 2.4"]?.[0];
  return b === undefined || c === undefined || !(c > 0) || !Number.isFinite(b) ? null : b / c;
}

/** The markdown table (also printed to the terminal). */
export function sideTable(rows: SideRow[]): string {
  const head = ["row", ...RUNTIMES, "berth/containerd 2.4", "floor"];
  const body = rows.map((r) => {
    const ratio = berthRatio(r);
    return [
      `${r.row} (${r.unit === "ms" ? "ms, p50 / p90" : "MiB"})`,
      ...RUNTIMES.map((n) => cell(r.values[n])),
      ratio === null ? "-" : `${ratio.toFixed(2)}x`,
      r.floor ? `${num(r.floor.value)} (${r.floor.what})` : "-",
    ];
  });
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const right = (i: number) => i > 0 && i < head.length - 1;
  const line = (cells: string[]) =>
    `| ${cells.map((c, i) => (right(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join(" | ")} |`;
  const sep = `|${widths.map((w, i) => (right(i) ? `${"-".repeat(w + 1)}:` : "-".repeat(w + 2))).join("|")}|`;
  return [line(head), sep, ...body.map(line)].join("\n");
}

export const BEGIN = "<!-- side-by-side: generated by `npm run bench -- --compare containerd`; do not edit -->";
export const END = "<!-- side-by-side: end -->";

/** Replaces the generated section of RESULTS.md (appended when the file has none). */
/** Replaces the generated section of a file that has both markers; false (nothing written) if it has not. */
export function replaceSection(file: string, section: string): boolean {
  const text = existsSync(file) ? readFileSync(file, "utf8") : "";
  const a = text.indexOf(BEGIN);
  const b = text.indexOf(END);
  if (a < 0 || b < a) return false;
  writeFileSync(file, `${text.slice(0, a)}${BEGIN}\n${section.trim()}\n${END}${text.slice(b + END.length)}`);
  return true;
}

export function writeSection(file: string, section: string): void {
  const text = existsSync(file) ? readFileSync(file, "utf8") : "# Benchmark results\n";
  const block = `${BEGIN}\n${section.trim()}\n${END}`;
  const a = text.indexOf(BEGIN);
  const b = text.indexOf(END);
  const out =
    a >= 0 && b > a ? text.slice(0, a) + block + text.slice(b + END.length) : `${text.trimEnd()}\n\n${block}\n`;
  writeFileSync(file, out);
}
