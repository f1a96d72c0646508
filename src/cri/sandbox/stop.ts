// StopPodSandbox (containerd's sandbox_stop.go): stops every container, the sandbox process
// and the pod's network. Safe to repeat.
import { ContainerEventType } from "../../gen/cri/runtime/v1/api.js";
import { NotFoundError } from "../../util/errors.js";
import { CRI_NAMESPACE as NS } from "../context.js";
import { stopEntry } from "../container/stop.js";
import { podFiles, unmountShm } from "../pod-files.js";
import type { SandboxDeps } from "./deps.js";
import { publishSandboxEvent } from "./events.js";
import { nriOf, nriPod } from "../nri-view.js";

export async function stopPodSandbox(d: SandboxDeps, ref: string): Promise<void> {
  let id: string;
  try {
    id = d.store.resolve(ref).id;
  } catch (err) {
    // Idempotent (CRI): a pod already removed has nothing left to stop, as containerd.
    if (err instanceof NotFoundError) return;
    throw err;
  }
  await d.lock.run(id, async () => {
    if (d.store.get(id)) await stopSandboxEntry(d, id);
  });
}

/**
 * Stops the pod (no lock taken: callers hold the pod's). NRI plugins hear StopPodSandbox once,
 * when a READY pod stops (`nriStop`, by default whether the pod is READY now): a repeated stop
 * changes nothing and tells them nothing.
 */
export async function stopSandboxEntry(d: SandboxDeps, id: string, opts: { nriStop?: boolean } = {}): Promise<void> {
  const e = d.store.get(id);
  if (!e) return;
  const nriStop = opts.nriStop ?? e.status.phase === "ready";
  const hadTask = d.runtime.has(NS, id);
  for (const c of d.containers.store.bySandbox(id)) await stopEntry(d.containers, c.id, 0);
  // Between the containers and the sandbox, as containerd: the containers have exited, the
  // pod's namespaces and network are still there for the plugins to look at.
  if (nriStop) await nriOf(d).stopPodSandbox(nriPod(e, d.cgroupDriver));
  // The sandbox task's end (runc kill, then runc delete) and the network's CNI DEL (plugin
  // execs) run at once: the netns is pinned by its file, not by the pause process, so the
  // plugins find it either way, and nothing else of the pod is left to use the network.
  const task = d.runtime.has(NS, id)
    ? (async () => {
        await d.runtime.kill(NS, id, 9, { all: true }).catch(() => {});
        await d.runtime.wait(NS, id).catch(() => {});
        await d.runtime
          .delete(NS, id)
          .catch((err: unknown) => d.log.warn({ err, pod: id }, "deleting the sandbox task"));
      })()
    : undefined;
  const network = d.network.teardownPod(id);
  // Both finish before the outcome is known (a failed DEL is the caller's to retry).
  await Promise.allSettled([task, network]);
  unmountShm(podFiles(e.info.podDir).shm);
  await network;
  d.store.apply(id, { type: "stopped" });
  if (hadTask) await publishSandboxEvent(d, id, ContainerEventType.CONTAINER_STOPPED_EVENT);
}
