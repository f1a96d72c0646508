// Container lifecycle events for GetContainerEvents (kubelet's evented PLEG).
import type { ContainerEventType } from "../../gen/cri/runtime/v1/api.js";
import { nowNs } from "../../util/clock.js";
import type { ContainerInfo } from "../store/index.js";
import type { ContainerDeps } from "./deps.js";
import { containerStatusOf } from "./status.js";

/** Publishes `type` for the container; `removed` carries the facts of one already gone. */
export async function publishContainerEvent(
  d: ContainerDeps,
  id: string,
  type: ContainerEventType,
  removed?: ContainerInfo,
): Promise<void> {
  // Building one reads the container's and the pod's status: not for nobody (kubelet
  // streams events only with its evented PLEG on).
  if (d.events.listening === false) return;
  try {
    const e = d.store.get(id);
    const sandboxId = removed?.sandboxId ?? e?.info.sandboxId;
    if (!sandboxId) return;
    const statuses = !removed && e ? [(await containerStatusOf(d, e, false)).status] : [];
    d.events.publish({
      containerId: id,
      containerEventType: type,
      createdAt: nowNs(),
      podSandboxStatus: await d.podStatus(sandboxId),
      containersStatuses: statuses,
    });
  } catch (err) {
    d.log.debug({ err }, "publishing a container event failed");
  }
}
