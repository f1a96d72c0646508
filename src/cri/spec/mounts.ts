// Container mounts: the runtime's default filesystems (/proc, /dev, /sys, ...), the
// pod's shared files (/etc/hosts, /etc/hostname, /etc/resolv.conf, /dev/shm) and the
// CRI bind mounts, combined the way containerd's CRI plugin does (opts.WithMounts).

import { readFileSync, realpathSync, statSync } from "node:fs";
import { posix } from "node:path";
import { MountPropagation, type Mount as CriMount } from "../../gen/cri/runtime/v1/api.js";
import { InvalidArgumentError, UnimplementedError } from "../../util/errors.js";
import type { Mount } from "../../oci/spec.js";

/** The filesystems every container gets (containerd's defaults without /run). */
export function defaultMounts(): Mount[] {
  return [
    { destination: "/proc", type: "proc", source: "proc", options: ["nosuid", "noexec", "nodev"] },
    {
      destination: "/dev",
      type: "tmpfs",
      source: "tmpfs",
      options: ["nosuid", "strictatime", "mode=755", "size=65536k"],
    },
    {
      destination: "/dev/pts",
      type: "devpts",
      source: "devpts",
      options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
    },
    {
      destination: "/dev/shm",
      type: "tmpfs",
      source: "shm",
      options: ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
    },
    { destination: "/dev/mqueue", type: "mqueue", source: "mqueue", options: ["nosuid", "noexec", "nodev"] },
    { destination: "/sys", type: "sysfs", source: "sysfs", options: ["nosuid", "noexec", "nodev", "ro"] },
  ];
}

/** The read-only cgroup filesystem Docker and containerd give containers. */
export function cgroupMount(): Mount {
  return {
    destination: "/sys/fs/cgroup",
    type: "cgroup",
    source: "cgroup",
    options: ["nosuid", "noexec", "nodev", "relatime", "ro"],
  };
}

/** A line of /proc/self/mountinfo that matters here. */
export interface MountInfo {
  mountPoint: string;
  /** Optional fields, e.g. ["shared:1"], ["master:3"], []. */
  optional: string[];
}

function unescapeMountInfo(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

export function parseMountInfo(text: string): MountInfo[] {
  const out: MountInfo[] = [];
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    const f = line.split(" ");
    const sep = f.indexOf("-", 6);
    if (sep < 0 || f.length < 5) continue;
    out.push({ mountPoint: unescapeMountInfo(f[4]!), optional: f.slice(6, sep).filter((o) => o !== "") });
  }
  return out;
}

/** The mount that holds `path`: the last-mounted one with the longest mount point prefix. */
export function mountOf(path: string, infos: readonly MountInfo[]): MountInfo | undefined {
  let best: MountInfo | undefined;
  for (const m of infos) {
    const mp = m.mountPoint;
    const holds = mp === "/" || path === mp || path.startsWith(mp.endsWith("/") ? mp : mp + "/");
    if (holds && (!best || mp.length >= best.mountPoint.length)) best = m;
  }
  return best;
}

export interface BindOptions {
  /** Reads /proc/self/mountinfo; tests pass their own. */
  mountInfo?: () => string;
}

function checkPropagation(src: string, want: "shared" | "shared-or-slave", opts: BindOptions): void {
  const text = opts.mountInfo ? opts.mountInfo() : readFileSync("/proc/self/mountinfo", "utf8");
  const m = mountOf(src, parseMountInfo(text));
  if (!m) throw new InvalidArgumentError(`cannot find the mount holding ${src}`);
  const shared = m.optional.some((o) => o.startsWith("shared:"));
  const slave = m.optional.some((o) => o.startsWith("master:"));
  if (want === "shared" && !shared) {
    throw new InvalidArgumentError(
      `path ${JSON.stringify(src)} is mounted on ${JSON.stringify(m.mountPoint)} but it is not a shared mount: ` +
        `Bidirectional propagation needs "mount --make-rshared ${m.mountPoint}" on the node`,
    );
  }
  if (want === "shared-or-slave" && !shared && !slave) {
    throw new InvalidArgumentError(
      `path ${JSON.stringify(src)} is mounted on ${JSON.stringify(m.mountPoint)} but it is not a shared or slave mount: ` +
        `HostToContainer propagation needs "mount --make-rshared ${m.mountPoint}" on the node`,
    );
  }
}

/** What a converted CRI mount does to the root's propagation. */
export interface BindResult {
  mount: Mount;
  /** "rshared" or "rslave" when the mount needs the rootfs to propagate too. */
  rootfsPropagation?: "rshared" | "rslave";
}

/**
 * A CRI mount as an OCI bind mount. The host path must exist (containerd would create
 * a missing one as a directory; berth refuses, so a typo is an error rather than an
 * empty directory left on the node), and a symlink is resolved to its target.
 */
export function criBindMount(m: CriMount, opts: BindOptions = {}): BindResult {
  if (!m.containerPath || !m.containerPath.startsWith("/")) {
    throw new InvalidArgumentError(`mount container_path ${JSON.stringify(m.containerPath)} must be an absolute path`);
  }
  if (m.image && m.image.image) {
    throw new UnimplementedError(`image volume mounts are not supported (mount at ${m.containerPath})`);
  }
  if (!m.hostPath) throw new InvalidArgumentError(`mount at ${m.containerPath} has an empty host_path`);
  let src: string;
  try {
    statSync(m.hostPath);
    src = realpathSync(m.hostPath);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new InvalidArgumentError(
      code === "ENOENT"
        ? `mount host path ${JSON.stringify(m.hostPath)} does not exist on this node: create it or fix the path`
        : `mount host path ${JSON.stringify(m.hostPath)} cannot be used: ${(err as Error).message}`,
      { cause: err },
    );
  }
  const options = ["rbind"];
  let rootfsPropagation: BindResult["rootfsPropagation"];
  switch (m.propagation) {
    case MountPropagation.PROPAGATION_BIDIRECTIONAL:
      checkPropagation(src, "shared", opts);
      options.push("rshared");
      rootfsPropagation = "rshared";
      break;
    case MountPropagation.PROPAGATION_HOST_TO_CONTAINER:
      checkPropagation(src, "shared-or-slave", opts);
      options.push("rslave");
      rootfsPropagation = "rslave";
      break;
    case MountPropagation.PROPAGATION_PRIVATE:
      options.push("rprivate");
      break;
    default:
      throw new InvalidArgumentError(`mount of ${m.hostPath}: unknown propagation ${m.propagation}`);
  }
  if (m.recursiveReadOnly) {
    if (!m.readonly) throw new InvalidArgumentError(`mount of ${m.hostPath}: recursive_read_only needs readonly`);
    if (m.propagation !== MountPropagation.PROPAGATION_PRIVATE) {
      throw new InvalidArgumentError(`mount of ${m.hostPath}: recursive_read_only needs private propagation`);
    }
    options.push("rro");
  } else {
    // Like containerd, a read-only rootfs does not make bind mounts read-only.
    options.push(m.readonly ? "ro" : "rw");
  }
  const mount: Mount = { destination: m.containerPath, type: "bind", source: src, options };
  // An idmapped mount (kubelet sends the pod's mappings on every mount of a pod with a user
  // namespace): the runtime shifts the source's ids, so the container's root owns what the
  // host's root owns there, and what it writes is stored as the ids it has inside.
  const uids = m.uidMappings ?? [];
  const gids = m.gidMappings ?? [];
  if (uids.length > 0 || gids.length > 0) {
    if (uids.length === 0 || gids.length === 0) {
      throw new InvalidArgumentError(`mount of ${m.hostPath}: an idmapped mount needs both UID and GID mappings`);
    }
    const oci = (l: typeof uids) => l.map((x) => ({ containerID: x.containerId, hostID: x.hostId, size: x.length }));
    mount.uidMappings = oci(uids);
    mount.gidMappings = oci(gids);
  }
  return { mount, rootfsPropagation };
}

/** A bind mount of a daemon-made pod file or directory (no checks: the daemon made it). */
export function podBindMount(source: string, destination: string, readonly: boolean, extra: string[] = []): Mount {
  return { destination, type: "bind", source, options: ["rbind", "rprivate", readonly ? "ro" : "rw", ...extra] };
}

/** Number of path parts of a destination; shallower mounts go first so they don't hide deeper ones. */
export function mountDepth(destination: string): number {
  return posix.normalize(destination).replace(/\/+$/, "").split("/").length - 1;
}

export const cleanPath = (p: string): string => {
  const n = posix.normalize(p);
  return n.length > 1 ? n.replace(/\/+$/, "") : n;
};
