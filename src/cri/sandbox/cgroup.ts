// The pod cgroup berth makes for a pod kubelet gave no cgroup parent (/berth/<podId>).
import type { PodSandboxConfig } from "../../gen/cri/runtime/v1/api.js";
import { podCgroupOwned } from "../../oci/index.js";
import { removePodCgroup } from "../pod-cgroup.js";
import type { SandboxDeps } from "./deps.js";

/** Removes the pod cgroup berth made (never a parent kubelet gave); a busy one is logged, not killed. */
export async function removeOwnCgroup(
  d: Pick<SandboxDeps, "log">,
  id: string,
  config: PodSandboxConfig,
): Promise<void> {
  const own = podCgroupOwned(config.linux?.cgroupParent, id);
  if (!own) return;
  const busy = await removePodCgroup(own);
  if (busy.length > 0) d.log.warn({ pod: id, cgroups: busy }, "pod cgroups still hold processes: left");
}
