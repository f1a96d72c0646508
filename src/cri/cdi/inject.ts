// CDI devices of a container: what kubelet asks for (ContainerConfig.CDI_devices, and the
// `cdi.k8s.io/*` annotations device plugins used before it, each a comma-separated list of
// qualified names) resolved against the spec files and applied to the container's OCI spec.
import type { ContainerConfig } from "../../gen/cri/runtime/v1/api.js";
import type { Spec } from "../../oci/spec.js";
import { applyCdiEdits, type DeviceLookup, hostDeviceInfo } from "./apply.js";
import { editsFor, loadCdiSpecs, resolveCdiDevices } from "./registry.js";

export const CDI_ANNOTATION_PREFIX = "cdi.k8s.io/";

/** The qualified device names a container config asks for, without duplicates, in request order. */
export function requestedCdiDevices(config: Pick<ContainerConfig, "CDIDevices" | "annotations">): string[] {
  const names: string[] = [];
  for (const [k, v] of Object.entries(config.annotations ?? {}).sort(([a], [b]) => a.localeCompare(b))) {
    if (!k.startsWith(CDI_ANNOTATION_PREFIX)) continue;
    names.push(
      ...v
        .split(",")
        .map((s) => s.trim())
        .filter(Boolean),
    );
  }
  for (const d of config.CDIDevices ?? []) names.push(d.name);
  return [...new Set(names)];
}

/**
 * Applies the requested devices to `spec` (in place). Nothing is touched outside the spec, so a
 * failure leaves nothing behind but the spec the caller discards. No request, no file read.
 */
export async function injectCdiDevices(
  spec: Spec,
  requested: string[],
  dirs: string[],
  lookup: DeviceLookup = hostDeviceInfo,
): Promise<void> {
  if (requested.length === 0) return;
  const devices = resolveCdiDevices(await loadCdiSpecs(dirs), requested);
  for (const { source, edits } of editsFor(devices)) applyCdiEdits(spec, edits, source, lookup);
}
