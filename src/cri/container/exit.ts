// A container's exit: heard from the exit monitor (the shim's TaskExit, or the runtime's for a
// dead shim), found by StopContainer, or found by recovery and reconciliation. Whoever notices
// it first starts handleContainerExit; the others share it. It settles the OOM verdict, waits
// for the output to drain into the log (only then is the container reported EXITED: kubelet
// reads a finished container's log as soon as it sees it exited), deletes the task from its
// shim and records the settled exit (containerd's internal/cri/server/events.go handleContainerExit).
import { ContainerEventType } from "../../gen/cri/runtime/v1/api.js";
import { dateNs, nowNs } from "../../util/clock.js";
import { NotFoundError } from "../../util/errors.js";
import { CRI_NAMESPACE as NS } from "../context.js";
import type { ContainerExit } from "../../metadata/containers.js";
import { UNKNOWN_REASON, exitReason } from "../store/index.js";
import type { ContainerDeps } from "./deps.js";
import { publishContainerEvent } from "./events.js";
import { cgroupOomKilled } from "./oom.js";
import { notifyNri } from "../nri-view.js";
import { unmountRootfs } from "./rootfs-unmount.js";

/** How long an exited process's output may take to drain before its streams are closed. */
const DRAIN_MS = 5000;

/** What an exit event tells; `reason` is set when the runtime reports it because the shim is gone. */
export interface ExitNotice {
  exitStatus: number;
  exitedAt?: Date;
  reason?: string;
}

/** The exit monitor heard the container's init process exit: note it and handle it in the background. */
export function onContainerExit(d: ContainerDeps, id: string, ev: ExitNotice): void {
  const shimDead = ev.reason !== undefined && ev.reason !== "";
  const exit: ContainerExit = {
    exitCode: ev.exitStatus,
    finishedAt: dateNs(ev.exitedAt) || nowNs(),
    reason: shimDead ? UNKNOWN_REASON : "",
    message: ev.reason ?? "",
  };
  if (!d.store.apply(id, { type: "exit-heard", exit, shimDead })) return;
  void handleContainerExit(d, id).catch((err: unknown) =>
    d.log.warn({ err, container: id }, "handling a container exit failed"),
  );
}

/** Records a container's exit and deletes its task; shared by whoever notices the exit first. */
export function handleContainerExit(d: ContainerDeps, id: string): Promise<void> {
  const e = d.store.get(id);
  if (!e) return Promise.resolve();
  if (!e.exiting) {
    const p = finishExit(d, id).finally(() => {
      if (e.exiting === p) e.exiting = undefined;
    });
    e.exiting = p;
  }
  return e.exiting;
}

async function finishExit(d: ContainerDeps, id: string): Promise<void> {
  const e = d.store.get(id);
  if (!e || e.status.exitFinal) return;
  if (!d.runtime.has(NS, id)) return;
  const state = await d.runtime.state(NS, id).catch(() => undefined);
  if (state && state.status !== "stopped") {
    d.store.apply(id, { type: "still-running" }); // a stale event
    return;
  }
  const seen = e.status.exit ?? e.status.exitHeard;
  // The runtime sets a reason when it, not the shim, tells of the exit: the shim is gone.
  const unknownExit = seen ? seen.reason === UNKNOWN_REASON : state?.reason !== undefined;
  const cgroupOom = e.status.oom || (await cgroupOomKilled(d, id));
  const reasonFor = (code: number) => {
    const oom = cgroupOom || (d.store.get(id)?.status.oom ?? false);
    return unknownExit && !oom ? UNKNOWN_REASON : exitReason(code, oom);
  };
  const logger = e.io;
  if (logger) {
    await drained(logger.done, DRAIN_MS);
    logger.close();
    if (e.io === logger) e.io = undefined;
  }
  // Its output is in: EXITED from now on, even if the delete below has to be retried.
  const code = state?.exitStatus ?? seen?.exitCode ?? 255;
  d.store.apply(id, {
    type: "output-drained",
    exit: {
      exitCode: code,
      finishedAt: dateNs(state?.exitedAt) || seen?.finishedAt || nowNs(),
      reason: reasonFor(code),
      message: state?.reason ?? seen?.message ?? "",
    },
  });
  let exitCode = state?.exitStatus ?? 255;
  let exitedAt = state?.exitedAt;
  let message = state?.reason ?? "";
  try {
    const r = await d.runtime.delete(NS, id);
    if (!state) {
      exitCode = r.exitStatus;
      exitedAt = r.exitedAt;
      message = r.reason ?? "";
    }
  } catch (err) {
    if (!(err instanceof NotFoundError)) throw err;
  }
  // The task is gone: its rootfs is unmounted now, as containerd's shim does when it deletes
  // a task, so RemoveContainer has no unmount to wait for (it tries again if this fails). On
  // the thread pool: an overlay's unmount syncs its upper filesystem, time the event loop spent
  // blocked when this was synchronous (about 0.2-0.3 ms a container in a CPU profile at load 1,
  // more under load). StopContainer still waits for it (it awaits this exit handling), so
  // RemoveContainer finds it done.
  try {
    await unmountRootfs(d.bundles.rootfs(id));
  } catch (err) {
    d.log.warn({ err, container: id }, "unmounting an exited container's rootfs failed; RemoveContainer tries again");
  }
  const exit = { exitCode, finishedAt: dateNs(exitedAt) || nowNs(), reason: reasonFor(exitCode), message };
  if (!d.store.apply(id, { type: "task-deleted", exit })) return;
  // Once per container, whether it was stopped or exited by itself (its exit is settled once).
  await notifyNri(d, id, (nri, p, c) => nri.stopContainer(p, c));
  await publishContainerEvent(d, id, ContainerEventType.CONTAINER_STOPPED_EVENT);
}

/** The exit monitor heard an OOM kill in the container. */
export function onContainerOom(d: ContainerDeps, id: string): void {
  d.store.apply(id, { type: "oom" });
}

/** Waits for `done`, at most `ms` (the timer is cleared as soon as it is done). */
function drained(done: Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)));
  return Promise.race([done, timeout]).finally(() => clearTimeout(timer));
}
