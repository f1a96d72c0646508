// A pod's sandbox process exited by itself: the pod is NOTREADY for good, as in containerd.
// The exit is recorded, its task deleted and CONTAINER_STOPPED sent for the pod; its network
// and containers stay until kubelet calls StopPodSandbox.
import { ContainerEventType } from "../../gen/cri/runtime/v1/api.js";
import { dateNs, nowNs } from "../../util/clock.js";
import { NotFoundError } from "../../util/errors.js";
import { CRI_NAMESPACE as NS } from "../context.js";
import type { SandboxDeps } from "./deps.js";
import { publishSandboxEvent } from "./events.js";

/** The exit monitor heard the sandbox process exit. */
export function onSandboxExit(d: SandboxDeps, id: string): void {
  const s = d.store.apply(id, { type: "exit-heard" });
  // An exit while RunPodSandbox still runs is handled when it ends (run.ts).
  if (s && s.phase !== "creating") noticeSandboxExit(d, id);
}

/** Handles a sandbox exit in the background, under the pod's lock. */
export function noticeSandboxExit(d: SandboxDeps, id: string): void {
  void d.lock
    .run(id, () => sandboxExited(d, id))
    .catch((err: unknown) => d.log.warn({ err, pod: id }, "handling a sandbox exit failed"));
}

/**
 * Records the exit (the pod is NOTREADY from now on, across restarts), deletes the task so the
 * shim frees it, and tells kubelet with CONTAINER_STOPPED for the pod. Idempotent; call it under
 * the pod's lock. A pod without any task left (its shim record gone) counts as exited too.
 * Throws only when the shim did not answer (nothing is decided then).
 */
export async function sandboxExited(d: SandboxDeps, id: string): Promise<void> {
  const e = d.store.get(id);
  if (!e || e.status.phase !== "ready") return;
  const known = e.status.exitedAt > 0n;
  if (!known) {
    let exitedAt = nowNs();
    let exitStatus: number | undefined;
    if (d.runtime.has(NS, id)) {
      let s;
      try {
        s = await d.runtime.state(NS, id);
      } catch (err) {
        // Only a task its shim no longer knows counts as exited; an unanswered call decides nothing.
        if (!(err instanceof NotFoundError)) throw err;
      }
      if (s && s.status !== "stopped") {
        d.store.apply(id, { type: "still-running" }); // a stale event: it runs
        if (s.pid > 0) d.store.setPid(id, s.pid); // at recovery: the pid berthd forgot
        return;
      }
      if (s?.exitedAt) exitedAt = dateNs(s.exitedAt) || exitedAt;
      exitStatus = s?.exitStatus;
    }
    // Recorded before the delete: a crash in between leaves a known exit whose task recovery deletes.
    d.store.apply(id, { type: "exit-recorded", at: exitedAt });
    d.log.warn({ pod: id, exitStatus }, "the pod's sandbox process exited: the pod is NOTREADY");
  }
  if (d.runtime.has(NS, id)) {
    await d.runtime
      .delete(NS, id)
      .catch((err: unknown) => d.log.warn({ err, pod: id }, "deleting the exited sandbox task"));
  }
  if (!known) await publishSandboxEvent(d, id, ContainerEventType.CONTAINER_STOPPED_EVENT);
}
