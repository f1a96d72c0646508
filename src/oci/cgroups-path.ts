// linux.cgroupsPath for a pod or container under the pod's cgroup parent.

import { posix } from "node:path";

export type CgroupDriver = "cgroupfs" | "systemd";

/** The systemd unit prefix of berth's scopes ("<slice>:berth:<id>"), like containerd's "cri-containerd". */
export const SYSTEMD_SCOPE_PREFIX = "berth";

/** Where pods go when the CRI gives no cgroup parent (containerd uses "/k8s.io"). */
export const DEFAULT_CGROUP_PARENT = "/berth";

/**
 * cgroupfs: "<parent>/<id>". systemd: runc's "slice:prefix:name" form, where the slice
 * is the last element of the parent ("a.slice/b.slice" -> "b.slice"). Without an
 * explicit driver a parent ending in ".slice" means systemd, as containerd decides.
 */
export function cgroupsPath(parent: string, id: string, driver?: CgroupDriver): string {
  const base = posix.basename(parent);
  const systemd = driver ? driver === "systemd" : base.endsWith(".slice");
  if (systemd) return `${base.endsWith(".slice") ? base : ""}:${SYSTEMD_SCOPE_PREFIX}:${id}`;
  return posix.join(parent || DEFAULT_CGROUP_PARENT, id);
}
