// StartContainer: creates the task in the pod's shim with its stdio into the container's log
// pump, then starts it (containerd's container_start.go). A failed start is recorded as an
// exit with code 128 and reason StartError, as containerd does. When no NRI plugin needs to see
// the task created but not started, berth's shim runs it at Create (`runc run --detach`) and the
// Start only confirms it: one runtime process instead of two.
import { ContainerEventType } from "../../gen/cri/runtime/v1/api.js";
import { nowNs } from "../../util/clock.js";
import { FailedPreconditionError, NotFoundError } from "../../util/errors.js";
import { CRI_NAMESPACE as NS } from "../context.js";
import { ContainerLogger } from "../io/container-logger.js";
import type { ContainerDeps } from "./deps.js";
import { publishContainerEvent } from "./events.js";
import type { Event as NriEvent } from "../../gen/nri/api.js";
import { notifyNri, nriContainer, nriOf, nriPod } from "../nri-view.js";

// NRI's StartContainer event, typed by the generated enum (tsc checks the number) but not loaded
// from it: the generated NRI module is 0.7 MiB of V8 heap (1.5 MiB RSS) that a berthd without
// NRI (the default) never needs; src/nri/ loads it when NRI is enabled (issue 15).
const NRI_START_CONTAINER: NriEvent.START_CONTAINER = 6;

export async function startContainer(d: ContainerDeps, ref: string): Promise<void> {
  const id = d.store.resolve(ref).id;
  return d.lock.run(id, () => startLocked(d, id));
}

async function startLocked(d: ContainerDeps, id: string): Promise<void> {
  const e = d.store.get(id);
  if (!e) throw new NotFoundError(`container ${id} not found`);
  const s = e.status;
  if (s.phase !== "created" || s.startedAt !== 0n || s.exit || d.runtime.has(NS, id)) {
    throw new FailedPreconditionError(`container ${id} is not in the created state: it was started before`);
  }
  const pod = d.sandboxes.get(e.info.sandboxId);
  if (!pod) throw new NotFoundError(`pod sandbox ${JSON.stringify(e.info.sandboxId)} not found`);
  if (pod.status.phase !== "ready") throw new FailedPreconditionError(`pod sandbox ${pod.id} is not ready`);
  const config = e.config;
  const io = d.bundles.io(id);
  const logger = new ContainerLogger(io, e.info.logPath, {
    hold: true,
    maxLineSize: d.maxLogLineSize,
    stdin: config.stdin,
  });
  let created = false;
  const nri = nriOf(d);
  try {
    // Held shared so that no NRI plugin joins between the choice below and the start.
    await nri.blockSync(async () => {
      // With no plugin to hear of StartContainer between create and start, the shim may run
      // the task at Create (one runtime command); Start then only confirms it.
      const atOnce = !nri.subscribed(NRI_START_CONTAINER);
      // Taken before Start (before Create when that may run it) so that a process that exits at
      // once never finishes before it started.
      let startedAt = nowNs();
      await d.runtime.createTask({
        namespace: NS,
        id,
        bundle: d.bundles.dir(id),
        stdin: config.stdin ? io.stdin : "",
        stdout: io.stdout,
        stderr: config.tty ? "" : io.stderr,
        terminal: config.tty,
        handler: pod.info.runtimeHandler,
        sandboxId: pod.id,
        startAtOnce: atOnce,
      });
      created = true;
      // Plugins hear of the start with the task created, before it runs; a refusal undoes it.
      if (!atOnce) await nri.startContainer(nriPod(pod, d.cgroupDriver), nriContainer(e));
      logger.release();
      e.io = logger;
      if (!atOnce) startedAt = nowNs();
      await d.runtime.start(NS, id);
      d.store.apply(id, { type: "started", at: startedAt });
    });
  } catch (err) {
    if (e.io === logger) e.io = undefined;
    if (created) {
      await d.runtime.kill(NS, id, 9).catch(() => {});
      await d.runtime.delete(NS, id).catch(() => {});
    }
    logger.close();
    d.store.apply(id, { type: "start-failed", at: nowNs(), message: (err as Error).message });
    throw err;
  }
  await notifyNri(d, id, (nri, p, c) => nri.postStartContainer(p, c));
  await publishContainerEvent(d, id, ContainerEventType.CONTAINER_STARTED_EVENT);
}
