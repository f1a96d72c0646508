// What each runtime handler can do, probed once at start: the runtime's own `features`
// (src/oci/runtime-features.ts), and real attempts on this host of what the kernel must do:
// - recursive read-only: a mount made read-only with mount_setattr(AT_RECURSIVE) refuses a
//   write in its submount (native probeRecursiveReadOnly, in a throwaway mount namespace);
// - user namespaces: a user namespace berthd makes and pins, an idmapped mount through it on
//   the filesystem of berthd's root (where image layers live), and an overlay on that layer;
// - user namespaces with the host network: a user namespace that does not own the network
//   namespace binds the host's /sys recursively read-only (sysfs cannot be mounted there).
// A failed attempt turns the feature off for every handler, and the log says why.

import { mkdir, readFile, rmdir, stat } from "node:fs/promises";
import { join } from "node:path";
import {
  applyHostProbes,
  probeHandlerFeatures,
  type HandlerFeatures,
  type HostProbes,
} from "../../oci/runtime-features.js";
import * as sys from "../../sys/index.js";
import type { Logger } from "../../util/log.js";
import { pinPodNamespaces, unpinNamespace } from "./pin.js";

const PROBE_HOST_UID = 1_000_000; // any unused range: the probe's files are its own

/** Tries what a pod with a user namespace needs of the kernel, under `dir` (removed after). */
export async function probeIdmappedLayers(dir: string): Promise<void> {
  const [userns, layer, mapped, upper, work, merged] = ["userns", "layer", "mapped", "upper", "work", "merged"].map(
    (n) => join(dir, n),
  );
  // Undoes a probe, also one a crash cut short: only the probe's own empty directories are
  // ever mounted here, and they are removed one by one, never by a recursive rm.
  const cleanUp = async () => {
    for (const at of [merged, mapped]) {
      try {
        sys.umount2(at, sys.MNT_DETACH);
      } catch {
        // not mounted
      }
    }
    await unpinNamespace(userns).catch(() => undefined);
    for (const d of [merged, join(work, "work"), work, upper, mapped, layer, dir])
      await rmdir(d).catch(() => undefined);
  };
  await cleanUp();
  try {
    for (const d of [layer, mapped, upper, work, merged]) await mkdir(d, { recursive: true, mode: 0o700 });
    const m = [{ containerID: 0, hostID: PROBE_HOST_UID, size: 65536 }];
    await pinPodNamespaces(userns, null, { uidMappings: m, gidMappings: m });
    sys.idmapMount(layer, mapped, userns);
    const seen = await stat(mapped);
    if (seen.uid !== PROBE_HOST_UID) throw new Error(`an idmapped mount shows uid ${seen.uid}, not ${PROBE_HOST_UID}`);
    sys.mount("overlay", merged, "overlay", 0, `lowerdir=${mapped},upperdir=${upper},workdir=${work}`);
  } finally {
    await cleanUp();
  }
}

/** The first mount below /sys in this process's mount table, relative to /sys ("" if none). */
export function firstSysSubmount(mountinfo: string): string {
  for (const line of mountinfo.split("\n")) {
    const at = line.split(" ")[4];
    if (at?.startsWith("/sys/"))
      return at.slice("/sys/".length).replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  }
  return "";
}

/**
 * A recursively read-only mount for real, on an empty directory `dir` (made and removed
 * here): null when a write in its submount was refused with EROFS, else why not.
 */
export async function probeRecursiveReadOnly(dir: string): Promise<string | null> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  try {
    return sys.probeRecursiveReadOnly(dir);
  } finally {
    await rmdir(dir).catch(() => undefined);
  }
}

/**
 * What a container of a pod with a user namespace and the host's network needs for /sys: a
 * user namespace (not owning the host's network namespace, so it cannot mount sysfs) binds
 * the host's /sys recursively read-only, its submounts are read-only too, and the host's
 * interfaces are readable there. Null when it works, else why not.
 */
export async function probeUsernsHostSys(): Promise<string | null> {
  const submount = firstSysSubmount(await readFile("/proc/self/mountinfo", "utf8"));
  return sys.probeUsernsHostSys(PROBE_HOST_UID, 65536, submount, "class/net/lo/ifindex");
}

async function attempt(what: () => Promise<unknown>): Promise<string | null> {
  try {
    const r = await what();
    return typeof r === "string" ? r : null;
  } catch (err) {
    return (err as Error).message;
  }
}

/**
 * Every handler's features (name -> binary_name): the runtime's word, then what this host was
 * seen to do (only the probes some runtime's word makes worth trying), per handler.
 */
export async function probeAllHandlers(
  binaries: Record<string, string>,
  scratch: string,
  log: Logger,
): Promise<Record<string, HandlerFeatures>> {
  const features = await probeHandlerFeatures(binaries);
  const all = Object.values(features);
  const skipped = "not tried: no runtime asks for it";
  const probes: HostProbes = { recursiveReadOnly: skipped, idmappedLayers: skipped, usernsHostSys: skipped };
  if (all.some((f) => f.recursiveReadOnlyMounts)) {
    probes.recursiveReadOnly = await attempt(() => probeRecursiveReadOnly(join(scratch, "rro")));
    if (probes.recursiveReadOnly !== null) {
      log.warn(
        { err: probes.recursiveReadOnly },
        "recursive read-only mounts: this kernel cannot make them; no handler announces them",
      );
    }
  }
  if (all.some((f) => f.userNamespaces)) {
    probes.idmappedLayers = await attempt(() => probeIdmappedLayers(scratch));
    if (probes.idmappedLayers !== null) {
      log.warn(
        { err: probes.idmappedLayers },
        "user namespaces: the runtime can make them but this host cannot make idmapped overlay layers; no handler announces them",
      );
    } else if (probes.recursiveReadOnly === null) {
      probes.usernsHostSys = await attempt(probeUsernsHostSys);
      if (probes.usernsHostSys !== null) {
        log.warn(
          { err: probes.usernsHostSys },
          "user namespaces with the host network: a user namespace cannot bind the host's /sys read-only here; pods asking for both are refused",
        );
      }
    }
  }
  await rmdir(scratch).catch(() => undefined); // the probes' parent dir, empty again
  return Object.fromEntries(Object.entries(features).map(([n, f]) => [n, applyHostProbes(f, probes)]));
}
