// What berthd reads of a cgroup beside the shim's task metrics: where a process's cgroup is
// in each mounted hierarchy (/proc/<pid>/cgroup), and swap use (v1 memory.memsw.*, v2
// memory.swap.*), which the CRI reports as SwapUsage. A v1 host without swap accounting
// (no memory.memsw files) exposes no swap figure at all: then none is reported.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { TaskStats } from "../../runtime/index.js";
import { cgroupMounts } from "../pod-cgroup.js";

type Mounts = ReturnType<typeof cgroupMounts>;

/**
 * Parses /proc/<pid>/cgroup ("ID:controllers:path" lines) into controller -> path, with the
 * unified (v2) hierarchy's path under "" and named hierarchies as "name=systemd".
 */
export function parseProcCgroup(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split("\n")) {
    const m = /^\d+:([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    if (m[1] === "") out.set("", m[2]!);
    else for (const c of m[1]!.split(",")) out.set(c, m[2]!);
  }
  return out;
}

/** The directories of `pid`'s cgroup: per v1 controller, and `unified` for the v2 hierarchy. */
export interface CgroupDirs {
  v1(controller: string): string | undefined;
  unified: string | undefined;
}

/** The cgroup directories a /proc/<pid>/cgroup text names, under the hierarchies mounted here. */
export function cgroupDirs(procCgroup: string, mounts: Mounts = cgroupMounts()): CgroupDirs {
  const paths = parseProcCgroup(procCgroup);
  const v2 = mounts.find((m) => m.v2);
  const unifiedPath = paths.get("");
  return {
    v1(controller) {
      const m = mounts.find((x) => !x.v2 && x.controllers.includes(controller));
      const p = paths.get(controller);
      return m && p !== undefined ? join(m.mountpoint, p) : undefined;
    },
    unified: v2 && unifiedPath !== undefined ? join(v2.mountpoint, unifiedPath) : undefined,
  };
}

export async function cgroupDirsOf(pid: number, mounts: Mounts = cgroupMounts()): Promise<CgroupDirs> {
  return cgroupDirs(await readFile(`/proc/${pid}/cgroup`, "utf8").catch(() => ""), mounts);
}

/** The unified-hierarchy directory of the cgroup at `path` (a cgroupfs-driver path). */
export function unifiedDir(path: string, mounts: Mounts = cgroupMounts()): string | undefined {
  const v2 = mounts.find((m) => m.v2);
  return v2 ? join(v2.mountpoint, path) : undefined;
}

export interface Swap {
  usage: bigint;
  /** The swap still allowed, when swap is limited; undefined when unlimited. */
  available: bigint | undefined;
}

/** At or above this a limit is "unlimited" (the kernel rounds the max down to a page). */
const UNLIMITED = 1n << 62n;

function swapOf(swapUsage: bigint, swapLimit: bigint | undefined): Swap {
  const usage = swapUsage > 0n ? swapUsage : 0n;
  if (swapLimit === undefined || swapLimit >= UNLIMITED) return { usage, available: undefined };
  return { usage, available: swapLimit > usage ? swapLimit - usage : 0n };
}

/**
 * v1 counts memory and swap together (memsw): swap is memsw minus memory, for use and for
 * the limit. v2 has swap on its own.
 */
function v1Swap(memUsage: bigint, memLimit: bigint, memswUsage: bigint, memswLimit: bigint): Swap {
  const limit = memswLimit >= UNLIMITED ? undefined : memswLimit - memLimit;
  return swapOf(memswUsage - memUsage, limit);
}

/** Swap use from a shim's task metrics; undefined where the cgroup has no swap accounting. */
export function swapFromStats(s: TaskStats | undefined): Swap | undefined {
  const v1 = s?.v1?.memory;
  // The shim reports a missing memsw file as zeros; a real memsw limit is never 0.
  if (v1?.usage && v1.swap && v1.swap.limit > 0n) {
    return v1Swap(v1.usage.usage, v1.usage.limit, v1.swap.usage, v1.swap.limit);
  }
  const v2 = s?.v2?.memory;
  if (v2 && v2.swapLimit > 0n) return swapOf(v2.swapUsage, v2.swapLimit);
  return undefined;
}

async function num(path: string): Promise<bigint | undefined> {
  const t = (await readFile(path, "utf8").catch(() => ""))?.trim();
  if (t === "max") return 1n << 63n;
  return /^\d+$/.test(t) ? BigInt(t) : undefined;
}

/** Swap use of the cgroup at `path` (the pod cgroup), read from its files. */
export async function readCgroupSwap(path: string, mounts: Mounts = cgroupMounts()): Promise<Swap | undefined> {
  const memory = mounts.find((m) => !m.v2 && m.controllers.includes("memory"));
  if (memory) {
    const dir = join(memory.mountpoint, path);
    const [u, l, su, sl] = await Promise.all(
      [
        "memory.usage_in_bytes",
        "memory.limit_in_bytes",
        "memory.memsw.usage_in_bytes",
        "memory.memsw.limit_in_bytes",
      ].map((f) => num(join(dir, f))),
    );
    if (u === undefined || l === undefined || su === undefined || sl === undefined) return undefined;
    return v1Swap(u, l, su, sl);
  }
  const dir = unifiedDir(path, mounts);
  if (!dir) return undefined;
  const [usage, limit] = await Promise.all([num(join(dir, "memory.swap.current")), num(join(dir, "memory.swap.max"))]);
  return usage === undefined ? undefined : swapOf(usage, limit);
}
