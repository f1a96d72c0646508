// What each configured OCI runtime can do, for the runtime handler features that Status
// announces (kubelet and critest read them before asking for the feature) and for the checks
// RunPodSandbox makes before it asks a runtime for them. Asked once at start from the
// runtime's own `features` subcommand (runc 1.1+, OCI runtime-spec features.md); a runtime
// without it (runsc, older crun) or not installed announces nothing.

import { execFile } from "node:child_process";
import { release } from "node:os";

export interface HandlerFeatures {
  /** The runtime binary answered at all (it is installed and runs). */
  installed: boolean;
  /** Mount.recursive_read_only works: the runtime knows the "rro" mount option and the kernel has mount_setattr(2). */
  recursiveReadOnlyMounts: boolean;
  /** Idmapped bind mounts (Mount.uid_mappings): the runtime's idmap mount extension (runc 1.2+) and mount_setattr(2). */
  idmapMounts: boolean;
  /**
   * Pods can have user namespaces (hostUsers: false): the runtime makes user namespaces and
   * idmapped mounts (runc 1.2+: linux.mountExtensions.idmap), and the kernel has
   * mount_setattr(2) with MOUNT_ATTR_IDMAP (5.12+) and overlayfs on idmapped layers (5.19+).
   */
  userNamespaces: boolean;
}

export const NO_FEATURES: HandlerFeatures = {
  installed: false,
  recursiveReadOnlyMounts: false,
  idmapMounts: false,
  userNamespaces: false,
};

function kernelAtLeast(kernelRelease: string, major: number, minor: number): boolean {
  const m = /^(\d+)\.(\d+)/.exec(kernelRelease);
  if (!m) return false;
  const [a, b] = [Number(m[1]), Number(m[2])];
  return a > major || (a === major && b >= minor);
}

/** mount_setattr(2), which "rro" needs, came in Linux 5.12. */
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

/** Parses `RUNTIME features` output (runtime-spec features.md). */
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
    recursiveReadOnlyMounts: options.includes("rro") && kernelHasMountSetattr(kernelRelease),
    idmapMounts,
    userNamespaces: namespaces.includes("user") && idmapMounts && kernelHasIdmappedOverlayLayers(kernelRelease),
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
