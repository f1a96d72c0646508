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
  spec.linux.resources = out;
  if (d.runtime.has(NS, e.id)) await d.runtime.update(NS, e.id, out, annotations);
  d.bundles.writeSpec(e.id, spec);
  if (resources) d.store.setConfig(e.id, withResources(e.config, resources));
}
