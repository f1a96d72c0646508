// RemovePodSandbox (containerd's sandbox_remove.go): stops the pod, removes its containers, its
// cgroup, bundle and files, then its record. OK when the pod does not exist.
import { rm } from "node:fs/promises";
import { ContainerEventType } from "../../gen/cri/runtime/v1/api.js";
import { unmountAll } from "../../snapshots/mount.js";
import { NotFoundError } from "../../util/errors.js";
import { removeEntry } from "../container/remove.js";
import type { SandboxEntry } from "../store/index.js";
import { podUsernsPath, unpinNamespace } from "../userns/pin.js";
import { removeOwnCgroup } from "./cgroup.js";
import type { SandboxDeps } from "./deps.js";
import { publishSandboxEvent } from "./events.js";
import { sandboxStatusOf } from "./status.js";
import { stopSandboxEntry } from "./stop.js";
import { nriOf, nriPod } from "../nri-view.js";

export async function removePodSandbox(d: SandboxDeps, ref: string): Promise<void> {
  let e: SandboxEntry;
  try {
    e = d.store.resolve(ref);
  } catch (err) {
    if (err instanceof NotFoundError) return;
    throw err;
  }
  await d.lock.run(e.id, async () => {
    if (d.store.get(e.id)) await removeSandboxEntry(d, e.id);
  });
}

/** Removes the pod with everything in it (no lock taken: callers hold the pod's). */
export async function removeSandboxEntry(d: SandboxDeps, id: string): Promise<void> {
  const wasReady = d.store.get(id)?.status.phase === "ready";
  d.store.apply(id, { type: "removing" });
  await stopSandboxEntry(d, id, { nriStop: wasReady });
  for (const c of d.containers.store.bySandbox(id)) await removeEntry(d.containers, c.id);
  const e = d.store.get(id);
  if (!e) return;
  await removeOwnCgroup(d, id, e.config);
  unmountAll(d.bundles.rootfs(id)); // a pod with a user namespace: its sandbox rootfs bind
  await d.bundles.remove(id);
  await unpinNamespace(podUsernsPath(e.info.podDir));
  await rm(e.info.podDir, { recursive: true, force: true });
  const last = sandboxStatusOf(e);
  await nriOf(d).removePodSandbox(nriPod(e, d.cgroupDriver));
  d.store.delete(id);
  await publishSandboxEvent(d, id, ContainerEventType.CONTAINER_DELETED_EVENT, last);
}
