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

/**
 * The cgroup parent of a pod's sandbox and containers. The CRI's (kubelet's pod cgroup) when
 * given, as containerd uses it. Without one, a cgroupfs pod gets a pod cgroup of its own,
 * "/berth/<podId>", so its sandbox and containers are "/berth/<podId>/<id>" and the pod's
 * total usage is one cgroup's; berth creates it (runc makes the missing levels) and removes it
 * with the pod (podCgroupOwned). Under systemd there is no parent slice to nest in: the
 * scopes stay where systemd puts them, as before.
 */
export function podCgroupParent(criParent: string | undefined, podId: string, driver?: CgroupDriver): string {
  if (criParent) return criParent;
  if (driver === "systemd") return "";
  return posix.join(DEFAULT_CGROUP_PARENT, podId);
}

/** The pod cgroup berth made itself (and so must remove), or undefined when the CRI gave the parent. */
export function podCgroupOwned(criParent: string | undefined, podId: string): string | undefined {
  return criParent ? undefined : posix.join(DEFAULT_CGROUP_PARENT, podId);
}
