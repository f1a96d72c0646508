// What berthd's start-up sweep removes: the leftovers on the host that no pod or container
// record owns. This module only decides (a pure function over a listing, unit-tested with fake
// listings); ./orphan-sweep.ts lists the host and removes what is decided here.
//
// Why there are orphans at all: every RPC records its pod or container before its first side
// effect and deletes the record after its last undo, and recovery finishes or rolls back
// whatever a record says was half done. But a crash can still separate a side effect from its
// record: a SIGKILL between creating a pod's netns file and mounting the namespace on it, a
// cgroup still busy when its pod's record was deleted, an undo that failed and was only logged.
// Nothing would ever look at those again, so at start everything of berth's is checked
// against the records.
//
// What counts as owned, and why:
// - Per-id paths under berthd's state dir: <state>/netns/<id>, the network state record
//   <network>/pods/<id>.json, <state>/bundles/<id>, <state>/io/<id> and <state>/pods/<id>
//   (with every mount below them). They are this berthd's by location; one is owned when a
//   pod record (any phase, including a create or remove that recovery is still retrying) or,
//   for bundles and io dirs, a container record has its id. A pod's netns and network state
//   are the network part of its record, so a recorded pod keeps them whatever its phase
//   (NetworkManager.recover handles the pods whose network must go); only a record-less one
//   is an orphan.
// - Mounts elsewhere under root or state (a disk the admin mounted on <root>/snapshots, say)
//   are not berth's to judge: never touched.
// - Pod cgroups /berth/<podId> (in every hierarchy) and IP allocations of host-local are in
//   places other berthds (tests run several at once, all under /berth) or other runtimes
//   (a CNI dataDir shared through the same network name) may use too. A record-less one
//   counts as this berthd's only when its id is still named by one of the per-id paths above
//   (removed after the cgroup, and kept while it is busy, so a later start finds it again).
//   Below a recorded pod's cgroup, a child cgroup no container record owns is this berthd's
//   (only its own pods' containers go there) and an orphan.
// - A temporary file of an atomic write (util/atomic-write.ts) whose writer was a previous
//   berthd is garbage wherever it is (a network state record, a bundle's config.json).
// - Log directories are kubelet's (it creates and removes them): never touched.

/** A namespace file in <state>/netns. */
export interface NetnsEntry {
  name: string;
  path: string;
  /** false for a plain file whose namespace is not mounted (a crash mid-create or mid-remove) */
  mounted: boolean;
}

/** A host-local allocation: <dataDir>/<network>/<ip>, holding the container id it is for. */
export interface IpAllocationEntry {
  path: string;
  network: string;
  ip: string;
  containerId: string;
}

/** A cgroup below /berth as berthd's cgroup hierarchies show it ("/berth/<a>" or "/berth/<a>/<b>"). */
export interface CgroupEntry {
  path: string;
}

export interface HostListing {
  /** ids that have a pod record, whatever its phase */
  pods: ReadonlySet<string>;
  /** ids that have a container record, whatever its phase */
  containers: ReadonlySet<string>;
  /** berthd's state dir: mount points are matched against its per-id subdirectories */
  stateDir: string;
  netns: NetnsEntry[];
  /** pod ids with a network state record, and its phase */
  networkStates: { podId: string; phase: string }[];
  /** entry names in <state>/bundles, <state>/io and <state>/pods */
  bundles: string[];
  ioDirs: string[];
  podDirs: string[];
  /** every mount point under berthd's root and state dirs */
  mounts: string[];
  allocations: IpAllocationEntry[];
  cgroups: CgroupEntry[];
  /** temporary files of atomic writes whose writer (a previous berthd) is gone, with the id they were for */
  temps: { id: string; path: string }[];
}

export type Orphan =
  /** a pod network (netns and/or network state record) to tear down through CNI DEL */
  | { kind: "network"; id: string; netns?: NetnsEntry; statePhase?: string }
  | { kind: "mount"; id: string; path: string }
  | { kind: "cgroup"; id: string; path: string }
  | { kind: "ip"; id: string; allocation: IpAllocationEntry }
  | { kind: "temp" | "bundle" | "io" | "pod-dir"; id: string; path: string };

/** The per-id subdirectories of the state dir, each with who may own an entry there. */
export const PER_ID_DIRS = {
  bundles: "bundles",
  io: "io",
  pods: "pods",
  netns: "netns",
} as const;

/** The id a mount point under a per-id dir belongs to, or undefined when it is elsewhere. */
export function mountOwnerId(stateDir: string, mountPoint: string): { dir: string; id: string } | undefined {
  const base = stateDir.endsWith("/") ? stateDir : `${stateDir}/`;
  if (!mountPoint.startsWith(base)) return undefined;
  const [dir, id] = mountPoint.slice(base.length).split("/");
  if (!dir || !id || !Object.values(PER_ID_DIRS).includes(dir as never)) return undefined;
  return { dir, id };
}

/**
 * Everything in `l` that no record owns, in the order to remove it: mounts (deepest first, so
 * nothing is removed under a mount), cgroups, networks (CNI DEL needs the netns and the state
 * record), IP allocations, interrupted writes' temporary files, and the per-id directories
 * last. The netns file, network record and per-id dirs are what marks a cgroup or an
 * allocation as this berthd's: the sweep keeps all of a pod's while its cgroup is busy.
 */
export function findOrphans(l: HostListing): Orphan[] {
  const podOwned = (id: string) => l.pods.has(id);
  const anyOwned = (id: string) => l.pods.has(id) || l.containers.has(id);
  const out: Orphan[] = [];

  // Mounts in a per-id dir whose id has no record (netns mounts go with their network).
  const mounts: Orphan[] = [];
  for (const m of new Set(l.mounts)) {
    const owner = mountOwnerId(l.stateDir, m);
    if (!owner || owner.dir === PER_ID_DIRS.netns) continue;
    const owned = owner.dir === PER_ID_DIRS.pods ? podOwned(owner.id) : anyOwned(owner.id);
    if (!owned) mounts.push({ kind: "mount", id: owner.id, path: m });
  }
  mounts.sort((a, b) => depth(pathOf(b)) - depth(pathOf(a)) || pathOf(a).localeCompare(pathOf(b)));
  out.push(...mounts);

  // The ids this berthd's own state still names: what makes a shared-place leftover ours.
  const known = new Set<string>([
    ...l.netns.map((n) => n.name),
    ...l.networkStates.map((s) => s.podId),
    ...l.bundles,
    ...l.ioDirs,
    ...l.podDirs,
  ]);

  // Cgroups: a record-less pod cgroup we know, or a container-less child of a recorded pod's.
  for (const c of l.cgroups) {
    const parts = c.path.split("/").filter(Boolean);
    if (parts[0] !== "berth" || parts.length < 2 || parts.length > 3) continue;
    const pod = parts[1]!;
    if (parts.length === 2) {
      if (!anyOwned(pod) && known.has(pod)) {
        out.push({ kind: "cgroup", id: pod, path: c.path });
      }
    } else {
      const child = parts[2]!;
      if (podOwned(pod) && child !== pod && !anyOwned(child)) out.push({ kind: "cgroup", id: child, path: c.path });
    }
  }

  // Networks: a netns file or network state record with no pod record.
  const netIds = new Set<string>();
  for (const s of l.networkStates) if (!podOwned(s.podId)) netIds.add(s.podId);
  for (const n of l.netns) if (!podOwned(n.name)) netIds.add(n.name);
  for (const id of [...netIds].sort()) {
    out.push({
      kind: "network",
      id,
      netns: l.netns.find((n) => n.name === id),
      statePhase: l.networkStates.find((s) => s.podId === id)?.phase,
    });
  }

  // IP allocations for an id we know that no record owns.
  for (const a of l.allocations) {
    if (!anyOwned(a.containerId) && known.has(a.containerId))
      out.push({ kind: "ip", id: a.containerId, allocation: a });
  }

  // A write a crash interrupted: garbage whoever owns the file it was to replace
  // (one inside a bundle that goes anyway goes with it).
  const goneBundles = l.bundles.filter((id) => !anyOwned(id)).map((id) => `${perIdPath(l, "bundles", id)}/`);
  for (const t of l.temps) {
    if (!goneBundles.some((b) => t.path.startsWith(b))) out.push({ kind: "temp", id: t.id, path: t.path });
  }

  // Per-id dirs last.
  for (const id of l.bundles) if (!anyOwned(id)) out.push({ kind: "bundle", id, path: perIdPath(l, "bundles", id) });
  for (const id of l.ioDirs) if (!anyOwned(id)) out.push({ kind: "io", id, path: perIdPath(l, "io", id) });
  for (const id of l.podDirs) if (!podOwned(id)) out.push({ kind: "pod-dir", id, path: perIdPath(l, "pods", id) });
  return out;
}

function perIdPath(l: HostListing, dir: keyof typeof PER_ID_DIRS, id: string): string {
  return `${l.stateDir.replace(/\/+$/, "")}/${PER_ID_DIRS[dir]}/${id}`;
}

function pathOf(o: Orphan): string {
  return "path" in o ? o.path : "";
}

function depth(p: string): number {
  return p.split("/").length;
}
