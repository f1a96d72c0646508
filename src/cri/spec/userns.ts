// The user namespace part of a container's OCI spec: a container of a pod with its own user
// namespace joins the sandbox's (containerd's WithPodNamespaces), repeats its mappings for
// the runtime to check, and sees the pod's files (/etc/hosts, /etc/hostname,
// /etc/resolv.conf) through idmapped bind mounts, so its root owns them as the host's root
// does. /dev/shm is left as it is (an empty tmpfs open to all, as containerd leaves it).

import type { ContainerConfig, PodSandboxConfig } from "../../gen/cri/runtime/v1/api.js";
import type { Mount, Spec } from "../../oci/spec.js";
import { InternalError, InvalidArgumentError } from "../../util/errors.js";
import { podUserns, sameUserns, type PodUserns } from "../userns/options.js";

/** The pod's user namespace, checked against what the container asks for (it must be the pod's). */
export function containerUserns(container: ContainerConfig, sandbox: PodSandboxConfig): PodUserns | null {
  const podOpts = sandbox.linux?.securityContext?.namespaceOptions?.usernsOptions;
  const own = container.linux?.securityContext?.namespaceOptions?.usernsOptions;
  if (!sameUserns(podOpts, own)) {
    throw new InvalidArgumentError(
      "the container's user namespace options differ from its pod's: a container runs in its pod's user namespace",
    );
  }
  return podUserns(podOpts);
}

/**
 * The /sys of a pod with a user namespace and the host's network (as containerd gives it):
 * the host's /sys bound recursively read-only, because the kernel lets only a user namespace
 * owning the network namespace mount sysfs, and the host's is owned by the host's.
 */
export function hostSysMount(): Mount {
  return { destination: "/sys", type: "bind", source: "/sys", options: ["rbind", "rro", "nosuid", "nodev", "noexec"] };
}

/** Replaces the sysfs mount on /sys of `mounts` with hostSysMount(), in place. */
export function useHostSys(mounts: Mount[]): void {
  const i = mounts.findIndex((m) => m.destination === "/sys" && m.type === "sysfs");
  if (i >= 0) mounts[i] = hostSysMount();
}

/**
 * Puts the container in the pod's user namespace at `usernsPath` (the sandbox's
 * /proc/PID/ns/user); the bind mounts of `podFiles` (host paths) become idmapped. With the
 * host's network, /sys is the host's, bound read-only (hostSysMount).
 */
export function applyContainerUserns(
  spec: Spec,
  userns: PodUserns,
  usernsPath: string | undefined,
  podFiles: string[],
  hostNetwork = false,
): void {
  if (!usernsPath) throw new InternalError("podPaths.usernsPath is required for a pod with a user namespace");
  // The user namespace first, so the runtime joins the others with its capabilities there.
  spec.linux.namespaces = [{ type: "user", path: usernsPath }, ...spec.linux.namespaces];
  spec.linux.uidMappings = userns.uidMappings;
  spec.linux.gidMappings = userns.gidMappings;
  if (hostNetwork) useHostSys(spec.mounts);
  for (const m of spec.mounts) {
    if (m.type === "bind" && m.source !== undefined && podFiles.includes(m.source) && !m.uidMappings) {
      m.uidMappings = userns.uidMappings;
      m.gidMappings = userns.gidMappings;
    }
  }
}
