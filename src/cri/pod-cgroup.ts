// The pod cgroup as berthd sees it: reading a pod's total CPU and memory from it
// (PodSandboxStats) and removing the pod cgroup berth made for a pod kubelet gave no cgroup
// parent (RemovePodSandbox). runc creates a task's cgroup with every missing level above it
// and removes only its own leaf, so the pod level is berth's to remove, in every hierarchy
// (each v1 controller, the named name=systemd one, and the unified one of a hybrid host).
import { readFileSync } from "node:fs";
import { readdir, readFile, rmdir } from "node:fs/promises";
import { join, posix } from "node:path";
import { DEFAULT_CGROUP_PARENT } from "../oci/index.js";
import { cgroupFilesystems } from "../util/cgroup-mounts.js";

/** What CRI stats report of a cgroup. */
export interface CgroupUsage {
  cpuNs: bigint;
  /** kubelet's working set: usage minus the inactive file cache, never below zero. */
  workingSet: bigint;
  usage: bigint;
  rss: bigint;
  pageFaults: bigint;
  majorPageFaults: bigint;
}

export interface CgroupMount {
  mountpoint: string;
  v2: boolean;
  /** v1 controllers of the hierarchy ("memory", "cpuacct", "name=systemd", ...). */
  controllers: string[];
}

/** The cgroup hierarchies mounted in berthd's mount namespace, from /proc/self/mountinfo. */
export function cgroupMounts(mountinfo = readFileSync("/proc/self/mountinfo", "utf8")): CgroupMount[] {
  return cgroupFilesystems(mountinfo).map((f) => ({
    mountpoint: f.mountpoint,
    v2: f.v2,
    controllers: f.v2
      ? []
      : f.superOpts.filter((o) => o !== "rw" && o !== "ro" && !o.startsWith("release_agent") && o !== "clone_children"),
  }));
}

async function text(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, "utf8");
  } catch {
    return undefined;
  }
}

function int(s: string | undefined): bigint | undefined {
  const t = s?.trim().split(/\s+/)[0];
  return t && /^\d+$/.test(t) ? BigInt(t) : undefined;
}

function keyed(s: string | undefined): Map<string, bigint> {
  const out = new Map<string, bigint>();
  for (const line of (s ?? "").split("\n")) {
    const [k, v] = line.trim().split(/\s+/);
    if (k && v && /^\d+$/.test(v)) out.set(k, BigInt(v));
  }
  return out;
}

const workingSet = (usage: bigint, inactive: bigint) => (usage > inactive ? usage - inactive : 0n);

/**
 * The hierarchical usage of the cgroup at `path` (absolute, as in linux.cgroupsPath with the
 * cgroupfs driver): v1 memory + cpuacct where the host has v1 controllers, else the unified
 * hierarchy. undefined when the cgroup does not exist.
 */
export async function readCgroupUsage(path: string, mounts = cgroupMounts()): Promise<CgroupUsage | undefined> {
  const memory = mounts.find((m) => !m.v2 && m.controllers.includes("memory"));
  if (memory) {
    const dir = join(memory.mountpoint, path);
    const usage = int(await text(join(dir, "memory.usage_in_bytes")));
    if (usage === undefined) return undefined;
    const stat = keyed(await text(join(dir, "memory.stat")));
    const acct = mounts.find((m) => !m.v2 && m.controllers.includes("cpuacct"));
    const cpu = acct ? int(await text(join(acct.mountpoint, path, "cpuacct.usage"))) : undefined;
    return {
      cpuNs: cpu ?? 0n,
      workingSet: workingSet(usage, stat.get("total_inactive_file") ?? 0n),
      usage,
      rss: stat.get("total_rss") ?? 0n,
      pageFaults: stat.get("total_pgfault") ?? 0n,
      majorPageFaults: stat.get("total_pgmajfault") ?? 0n,
    };
  }
  const unified = mounts.find((m) => m.v2);
  if (!unified) return undefined;
  const dir = join(unified.mountpoint, path);
  const usage = int(await text(join(dir, "memory.current")));
  if (usage === undefined) return undefined;
  const stat = keyed(await text(join(dir, "memory.stat")));
  const cpu = keyed(await text(join(dir, "cpu.stat")));
  return {
    cpuNs: (cpu.get("usage_usec") ?? 0n) * 1000n,
    workingSet: workingSet(usage, stat.get("inactive_file") ?? 0n),
    usage,
    rss: stat.get("anon") ?? 0n,
    pageFaults: stat.get("pgfault") ?? 0n,
    majorPageFaults: stat.get("pgmajfault") ?? 0n,
  };
}

/** rmdir of a cgroup and (deepest first) the cgroups below it; returns the ones still busy. */
async function rmdirTree(dir: string, busy: string[]): Promise<void> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
    throw err;
  }
  for (const e of entries) if (e.isDirectory()) await rmdirTree(join(dir, e.name), busy);
  try {
    await rmdir(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return;
    if (code === "EBUSY") busy.push(dir);
    else throw err;
  }
}

/**
 * Removes a pod cgroup berth created (podCgroupOwned) in every mounted hierarchy, with any
 * empty cgroups left below it (a task whose runc delete was interrupted). A cgroup that still
 * holds processes is left and reported (EBUSY): nothing is killed here. Refuses any path
 * outside berth's own parent, so a cgroup parent kubelet gave is never touched.
 */
export async function removePodCgroup(path: string, mounts = cgroupMounts()): Promise<string[]> {
  return removeBerthCgroup(path, 1, mounts);
}

/**
 * As removePodCgroup, for a cgroup left below a pod cgroup of berth's (/berth/<podId>/<id>:
 * a container whose task is gone). Empty cgroups only: nothing is killed.
 */
export async function removePodChildCgroup(path: string, mounts = cgroupMounts()): Promise<string[]> {
  return removeBerthCgroup(path, 2, mounts);
}

async function removeBerthCgroup(path: string, levels: number, mounts: CgroupMount[]): Promise<string[]> {
  const norm = posix.normalize(path);
  const parts = norm.split("/");
  if (!norm.startsWith(`${DEFAULT_CGROUP_PARENT}/`) || parts.length !== 2 + levels || parts.includes("..")) {
    throw new Error(`refusing to remove cgroup ${path}: not a pod cgroup of berth's`);
  }
  let busy: string[] = [];
  // A cgroup whose last process was just reaped can answer EBUSY for a moment (v1).
  for (let attempt = 0; attempt < 5; attempt++) {
    busy = [];
    for (const m of mounts) await rmdirTree(join(m.mountpoint, norm), busy);
    if (busy.length === 0) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return busy;
}
