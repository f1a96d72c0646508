// The start-up sweep of leftovers no record owns: lists berthd's per-id state dirs, its mounts,
// the cgroups below /berth and host-local's allocations, asks ./orphans.ts which of them are
// orphans, and removes those, logging each (warn: something was left by a crash or a failed
// undo, and an operator may want to know what). Runs in recovery after the records have been
// reconciled with the shims and before berthd serves, so no RPC creates anything meanwhile.
// A step that fails is logged and the sweep goes on; what is left is found again next start.
import { readdir, rm } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { basename, join } from "node:path";
import type { IpAllocation, NetnsInfo } from "../network/index.js";
import { removeAllocation } from "../network/index.js";
import { MNT_DETACH, umount2 } from "../sys/index.js";
import { unmountAll } from "../snapshots/mount.js";
import { staleTempFiles } from "../util/atomic-write.js";
import type { Logger } from "../util/log.js";
import { findOrphans, PER_ID_DIRS, type CgroupEntry, type HostListing, type Orphan } from "./orphans.js";
import { decodeMountPath } from "../util/cgroup-mounts.js";
import { cgroupMounts, removePodCgroup, removePodChildCgroup, type CgroupMount } from "./pod-cgroup.js";

/** berth's pod and container ids (ids.ts newId): what a cgroup name below /berth must look like to be looked at. */
const ID_RE = /^[0-9a-f]{64}$/;

export interface SweepDeps {
  stateDir: string;
  pods: { list(): { id: string }[] };
  containers: { list(): { id: string }[] };
  network: {
    listPinnedNetns(): Promise<NetnsInfo[]>;
    listPodStates(): Promise<{ podId: string; phase: string }[]>;
    ipAllocations(): Promise<IpAllocation[]>;
    teardownPod(podId: string): Promise<void>;
    staleTempFiles(): Promise<string[]>;
  };
  log: Logger;
  /** the cgroup hierarchies to look in (default: berthd's, from its mountinfo) */
  cgroupMounts?: () => CgroupMount[];
}

/** Lists, decides, removes; returns what it removed. */
export async function sweepOrphans(d: SweepDeps): Promise<Orphan[]> {
  const listing = await listHost(d);
  const removed: Orphan[] = [];
  // Ids whose cgroup still holds processes: the rest of theirs stays, marking the cgroup as ours.
  const held = new Set<string>();
  for (const o of findOrphans(listing)) {
    if (held.has(o.id) && o.kind !== "mount") continue;
    try {
      if (await remove(d, o)) removed.push(o);
      else if (o.kind === "cgroup") held.add(o.id);
    } catch (err) {
      d.log.warn({ err, orphan: describe(o) }, "removing a leftover no record owns failed; trying again next start");
    }
  }
  return removed;
}

async function listHost(d: SweepDeps): Promise<HostListing> {
  const mounts = d.cgroupMounts ?? cgroupMounts;
  return {
    // The records first: a retried create/remove may delete its record while the host is
    // listed, and one read as present only makes the sweep leave its things to that retry.
    pods: new Set(d.pods.list().map((p) => p.id)),
    containers: new Set(d.containers.list().map((c) => c.id)),
    stateDir: d.stateDir,
    netns: await d.network.listPinnedNetns(),
    networkStates: await d.network.listPodStates(),
    bundles: await names(join(d.stateDir, PER_ID_DIRS.bundles)),
    ioDirs: await names(join(d.stateDir, PER_ID_DIRS.io)),
    podDirs: await names(join(d.stateDir, PER_ID_DIRS.pods)),
    mounts: mountsUnder(d.stateDir),
    allocations: await d.network.ipAllocations(),
    cgroups: await berthCgroups(mounts()),
    temps: await staleTemps(d),
  };
}

/** Interrupted atomic writes of a previous berthd: network state records and bundles' specs. */
async function staleTemps(d: SweepDeps): Promise<{ id: string; path: string }[]> {
  const out: { id: string; path: string }[] = [];
  for (const path of await d.network.staleTempFiles()) {
    out.push({ id: basename(path).slice(1).split(".")[0] ?? "", path });
  }
  const bundles = join(d.stateDir, PER_ID_DIRS.bundles);
  for (const id of await names(bundles)) {
    for (const path of await staleTempFiles(join(bundles, id))) out.push({ id, path });
  }
  return out;
}

async function remove(d: SweepDeps, o: Orphan): Promise<boolean> {
  const what = describe(o);
  switch (o.kind) {
    case "network":
      await d.network.teardownPod(o.id);
      break;
    case "mount":
      try {
        unmountAll(o.path);
      } catch (err) {
        // Still busy (a process of a task that is gone? recovery killed those): detach it, so
        // at least nothing below the per-id dir is reachable when that dir is removed.
        if ((err as { code?: string }).code !== "EBUSY") throw err;
        umount2(o.path, MNT_DETACH);
      }
      break;
    case "cgroup": {
      const busy =
        o.path.split("/").filter(Boolean).length === 2
          ? await removePodCgroup(o.path, d.cgroupMounts?.())
          : await removePodChildCgroup(o.path, d.cgroupMounts?.());
      if (busy.length > 0) {
        // Processes are never killed here: the cgroup stays, and so does what marks it as ours.
        d.log.warn({ orphan: what, busy }, "a leftover cgroup no record owns still holds processes: left");
        return false;
      }
      break;
    }
    case "ip":
      // Often already released by the network teardown above.
      if (!(await removeAllocation(o.allocation.path))) return false;
      break;
    case "temp":
      await rm(o.path, { force: true });
      break;
    case "bundle":
    case "io":
    case "pod-dir": {
      // Never recurse into a mount (a bind-mounted host path would lose its files).
      const below = mountsUnder(o.path);
      if (below.length > 0) throw new Error(`${o.path} still has mounts below it: ${below.join(", ")}`);
      await rm(o.path, { recursive: true, force: true });
      break;
    }
  }
  d.log.warn({ orphan: what }, "removed a leftover no pod or container record owns");
  return true;
}

/** What an orphan was, for the log. */
export function describe(o: Orphan): Record<string, unknown> {
  switch (o.kind) {
    case "network":
      return {
        kind: "pod network",
        pod: o.id,
        netns: o.netns ? `${o.netns.path} (${o.netns.mounted ? "mounted" : "not mounted"})` : undefined,
        networkState: o.statePhase,
      };
    case "ip":
      return { kind: "IP allocation", pod: o.id, network: o.allocation.network, ip: o.allocation.ip };
    case "cgroup":
      return { kind: "cgroup", id: o.id, path: o.path };
    default:
      return { kind: o.kind, id: o.id, path: o.path };
  }
}

async function names(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir)).filter((n) => !n.startsWith(".")).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
}

/** Mount points strictly below `dir`, from berthd's mountinfo. */
function mountsUnder(dir: string): string[] {
  const prefix = `${dir.replace(/\/+$/, "")}/`;
  const out: string[] = [];
  for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
    const mp = line.split(" ")[4];
    if (!mp) continue;
    const path = decodeMountPath(mp);
    if (path.startsWith(prefix)) out.push(path);
  }
  return out;
}

/** The cgroups named like berth ids below /berth, and one level below those, in any hierarchy. */
async function berthCgroups(mounts: CgroupMount[]): Promise<CgroupEntry[]> {
  const seen = new Set<string>();
  for (const m of mounts) {
    const base = join(m.mountpoint, "berth");
    for (const pod of await subdirs(base)) {
      if (!ID_RE.test(pod)) continue;
      seen.add(`/berth/${pod}`);
      for (const child of await subdirs(join(base, pod))) if (ID_RE.test(child)) seen.add(`/berth/${pod}/${child}`);
    }
  }
  return [...seen].sort().map((path) => ({ path }));
}

async function subdirs(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name);
  } catch {
    return []; // no such hierarchy level
  }
}
