// What each runtime handler can do, probed once at start: the runtime's own `features`
// (src/oci/runtime-features.ts), and for user namespaces a real attempt on this host of what a
// pod with one needs from the kernel: a user namespace berthd makes and pins, an idmapped
// mount through it on the filesystem of berthd's root (where image layers live), and an
// overlay stacked on that idmapped layer. If the attempt fails, no handler announces user
// namespaces, and the log says why.

import { mkdir, rmdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { probeHandlerFeatures, type HandlerFeatures } from "../../oci/runtime-features.js";
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

/** Every handler's features (name -> binary_name); user namespaces only where the host passed the probe. */
export async function probeAllHandlers(
  binaries: Record<string, string>,
  scratch: string,
  log: Logger,
): Promise<Record<string, HandlerFeatures>> {
  const features = await probeHandlerFeatures(binaries);
  const wanted = Object.keys(features).filter((n) => features[n]!.userNamespaces);
  if (wanted.length === 0) return features;
  try {
    await probeIdmappedLayers(scratch);
  } catch (err) {
    log.warn(
      { err: (err as Error).message, handlers: wanted },
      "user namespaces: the runtime can make them but this host cannot make idmapped overlay layers; no handler announces them",
    );
    for (const n of wanted) features[n] = { ...features[n]!, userNamespaces: false };
  }
  return features;
}
