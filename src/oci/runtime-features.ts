// What each configured OCI runtime can do, for the runtime handler features that Status
// announces (kubelet and critest read them before asking for the feature) and for the checks
// RunPodSandbox makes before it asks a runtime for them. Two halves: the runtime's own word,
// asked once at start from its `features` subcommand (runc 1.1+, OCI runtime-spec
// features.md; a runtime without it, such as runsc or an older crun, or one not installed,
// announces nothing), and what this host's kernel was seen to do when berthd tried it at
// start (src/cri/userns/probe.ts), applied by applyHostProbes. A feature is announced only
// when both agree.

import { execFile } from "node:child_process";
import { release } from "node:os";

export interface HandlerFeatures {
  /** The runtime binary answered at all (it is installed and runs). */
  installed: boolean;
  /**
   * Mount.recursive_read_only works: the runtime knows the "rro" mount option and, once the
   * host probes are applied, a recursively read-only mount was made and written to here.
   */
  recursiveReadOnlyMounts: boolean;
  /** Idmapped bind mounts (Mount.uid_mappings): the runtime's idmap mount extension (runc 1.2+) and mount_setattr(2). */
  idmapMounts: boolean;
  /**
   * Pods can have user namespaces (hostUsers: false): the runtime makes user namespaces and
   * idmapped mounts (runc 1.2+: linux.mountExtensions.idmap), and the kernel has
   * mount_setattr(2) with MOUNT_ATTR_IDMAP (5.12+) and overlayfs on idmapped layers (5.19+).
   */
  userNamespaces: boolean;
  /**
   * Pods with a user namespace can use the host's network: user namespaces and "rro" (the
   * host's /sys is bound in recursively read-only, since sysfs cannot be mounted by a user
   * namespace that does not own the network namespace), and the host let a user namespace
   * do that. Only ever true once the host probes are applied.
   */
  userNamespacesHostNetwork: boolean;
}

export const NO_FEATURES: HandlerFeatures = {
  installed: false,
  recursiveReadOnlyMounts: false,
  idmapMounts: false,
  userNamespaces: false,
  userNamespacesHostNetwork: false,
};

function kernelAtLeast(kernelRelease: string, major: number, minor: number): boolean {
  const m = /^(\d+)\.(\d+)/.exec(kernelRelease);
  if (!m) return false;
  const [a, b] = [Number(m[1]), Number(m[2])];
  return a > major || (a === major && b >= minor);
}

/** mount_setattr(2), which idmapped mounts need, came in Linux 5.12. */
export function kernelHasMountSetattr(kernelRelease: string = release()): boolean {
  return kernelAtLeast(kernelRelease, 5, 12);
}

/** Idmapped mounts of a container's overlay rootfs need overlayfs on idmapped layers: Linux 5.19. */
export function kernelHasIdmappedOverlayLayers(kernelRelease: string = release()): boolean {
  return kernelAtLeast(kernelRelease, 5, 19);
}

interface FeaturesDoc {
  mountOptions?: unknown;
  linux?: { namespaces?: unknown; mountExtensions?: { idmap?: { enabled?: unknown } } };
}

/**
 * Parses `RUNTIME features` output (runtime-spec features.md): the runtime's word. Recursive
 * read-only mounts are what the runtime says; whether the kernel makes them is the host
 * probe's to say (applyHostProbes).
 */
export function parseRuntimeFeatures(json: string, kernelRelease: string = release()): HandlerFeatures {
  let doc: FeaturesDoc;
  try {
    doc = JSON.parse(json) as FeaturesDoc;
  } catch {
    return { ...NO_FEATURES, installed: true };
  }
  const options = Array.isArray(doc.mountOptions) ? doc.mountOptions : [];
  const namespaces = Array.isArray(doc.linux?.namespaces) ? doc.linux.namespaces : [];
  const idmapMounts = doc.linux?.mountExtensions?.idmap?.enabled === true && kernelHasMountSetattr(kernelRelease);
  return {
    installed: true,
    recursiveReadOnlyMounts: options.includes("rro"),
    idmapMounts,
    userNamespaces: namespaces.includes("user") && idmapMounts && kernelHasIdmappedOverlayLayers(kernelRelease),
    userNamespacesHostNetwork: false,
  };
}

/** What berthd saw this host do at start: null where the attempt worked, else why it did not. */
export interface HostProbes {
  /** A mount made read-only with mount_setattr(AT_RECURSIVE) refused a write in its submount. */
  recursiveReadOnly: string | null;
  /** A user namespace, an idmapped mount through it and an overlay on that (src/cri/userns/probe.ts). */
  idmappedLayers: string | null;
  /** A user namespace not owning the network namespace bound the host's /sys recursively read-only. */
  usernsHostSys: string | null;
}

/** A handler's features once the host has shown what its kernel does: each needs both halves. */
export function applyHostProbes(f: HandlerFeatures, p: HostProbes): HandlerFeatures {
  const recursiveReadOnlyMounts = f.recursiveReadOnlyMounts && p.recursiveReadOnly === null;
  const userNamespaces = f.userNamespaces && p.idmappedLayers === null;
  return {
    ...f,
    recursiveReadOnlyMounts,
    userNamespaces,
    userNamespacesHostNetwork: userNamespaces && recursiveReadOnlyMounts && p.usernsHostSys === null,
  };
}

/** A handler's binary_name may carry flags after the program ("runsc --network=host"). */
export function runtimeCommand(binaryName: string): [string, string[]] {
  const [program = "", ...flags] = binaryName.trim().split(/\s+/);
  return [program, flags];
}

/** Asks `binary features`; anything but a good answer within 10 s means no features. */
export function probeRuntimeFeatures(binaryName: string): Promise<HandlerFeatures> {
  const [program, flags] = runtimeCommand(binaryName);
  return new Promise((resolve) => {
    execFile(program, [...flags, "features"], { timeout: 10_000, maxBuffer: 1 << 20 }, (err, stdout) => {
      if (!err) return resolve(parseRuntimeFeatures(stdout));
      // ENOENT: not installed; anything else: it runs but has no `features` (runsc, old crun).
      resolve({ ...NO_FEATURES, installed: (err as NodeJS.ErrnoException).code !== "ENOENT" });
    });
  });
}

/** The features of every handler (name -> its runtime binary), probed in parallel. */
export async function probeHandlerFeatures(binaries: Record<string, string>): Promise<Record<string, HandlerFeatures>> {
  const names = Object.keys(binaries);
  const features = await Promise.all(names.map((n) => probeRuntimeFeatures(binaries[n])));
  return Object.fromEntries(names.map((n, i) => [n, features[i]]));
}
