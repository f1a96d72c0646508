// UpdateContainerResources (containerd's container_update_resources.go): the new limits go to
// the running task through its shim and into the bundle's spec, so a later read (status, a
// restart of berthd) sees them.
import type { LinuxContainerResources } from "../../gen/cri/runtime/v1/api.js";
import { probeHost } from "../../oci/index.js";
import { applyResources } from "../spec/index.js";
import { FailedPreconditionError } from "../../util/errors.js";
import { CRI_NAMESPACE as NS } from "../context.js";
import { withResources } from "../pod-resources.js";
import type { ContainerDeps } from "./deps.js";
import { notifyNri, nriContainer, nriOf, nriPod, nriPodStub } from "../nri-view.js";

export async function updateContainerResources(
  d: ContainerDeps,
  ref: string,
  resources: LinuxContainerResources | undefined,
  annotations: Record<string, string>,
): Promise<void> {
  const e = d.store.resolve(ref);
  if (e.status.exit) throw new FailedPreconditionError(`container ${e.id} has exited: its resources cannot change`);
  const spec = d.bundles.readSpec(e.id);
  const out = { ...(spec.linux.resources ?? {}) };
  applyResources(out, resources, probeHost());
  // NRI plugins see the new resources and may change them before they are applied.
  const nri = nriOf(d);
  if (nri.enabled) {
    const pod = d.sandboxes.get(e.info.sandboxId);
    const view = pod ? nriPod(pod, d.cgroupDriver) : nriPodStub(e.info.sandboxId);
    await nri.updateContainer(view, nriContainer(e), out);
  }
  spec.linux.resources = out;
  if (d.runtime.has(NS, e.id)) await d.runtime.update(NS, e.id, out, annotations);
  d.bundles.writeSpec(e.id, spec);
  if (resources) d.store.setConfig(e.id, withResources(e.config, resources));
  await notifyNri(d, e.id, (n, p, c) => n.postUpdateContainer(p, c));
}
