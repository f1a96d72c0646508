// The cgroup filesystems in a mount namespace, from its /proc/<pid>/mountinfo: for berthd's
// pod cgroups (cri/pod-cgroup.ts) and the shim's own cgroup (shim/cgroup-prime.ts).

/** One cgroup or cgroup2 line of mountinfo. */
export interface CgroupFilesystem {
  /** the hierarchy's path that is mounted (field 4; "/" unless a subtree is, e.g. in a cgroup namespace) */
  root: string;
  mountpoint: string;
  v2: boolean;
  /** the super options (for v1: the controllers, "name=systemd", and flags such as "rw") */
  superOpts: string[];
}

/** A mountinfo path with its octal escapes ("\040" for a space) decoded. */
export function decodeMountPath(p: string): string {
  return p.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

export function cgroupFilesystems(mountinfo: string): CgroupFilesystem[] {
  const out: CgroupFilesystem[] = [];
  for (const line of mountinfo.split("\n")) {
    const sep = line.indexOf(" - ");
    if (sep < 0) continue;
    const [fstype, , opts = ""] = line.slice(sep + 3).split(" ");
    if (fstype !== "cgroup" && fstype !== "cgroup2") continue;
    const f = line.slice(0, sep).split(" ");
    const mountpoint = decodeMountPath(f[4] ?? "");
    if (!mountpoint) continue;
    out.push({ root: decodeMountPath(f[3] ?? "/"), mountpoint, v2: fstype === "cgroup2", superOpts: opts.split(",") });
  }
  return out;
}
