// Pod lifecycle events for GetContainerEvents; they carry the sandbox id as the container id,
// as containerd sends them.
import type { ContainerEventType, PodSandboxStatus } from "../../gen/cri/runtime/v1/api.js";
import { nowNs } from "../../util/clock.js";
import type { SandboxDeps } from "./deps.js";
import { sandboxStatusById } from "./status.js";

export async function publishSandboxEvent(
  d: SandboxDeps,
  id: string,
  type: ContainerEventType,
  status?: PodSandboxStatus,
): Promise<void> {
  try {
    d.events.publish({
      containerId: id,
      containerEventType: type,
      createdAt: nowNs(),
      podSandboxStatus: status ?? sandboxStatusById(d, id),
      containersStatuses: [],
    });
  } catch (err) {
    d.log.debug({ err }, "publishing a pod event failed");
  }
}
