// StopContainer: the stop signal, then SIGKILL after the timeout; returns once the exit is
// handled (containerd's container_stop.go). Idempotent.
import { CRI_NAMESPACE as NS } from "../context.js";
import type { ContainerDeps } from "./deps.js";
import { handleContainerExit } from "./exit.js";
import { storedSignalNumber } from "../stop-signal.js";
import { NotFoundError } from "../../util/errors.js";

export async function stopContainer(d: ContainerDeps, ref: string, timeoutS: number): Promise<void> {
  let id: string;
  try {
    id = d.store.resolve(ref).id;
  } catch (err) {
    // Idempotent (CRI): a container already removed has nothing left to stop, as containerd.
    if (err instanceof NotFoundError) return;
    throw err;
  }
  await d.lock.run(id, async () => {
    if (d.store.get(id)) await stopEntry(d, id, timeoutS);
  });
}

/** Stops the container (no lock taken: callers hold the container's or its pod's). */
export async function stopEntry(d: ContainerDeps, id: string, timeoutS: number): Promise<void> {
  const e = d.store.get(id);
  if (!e || e.status.exitFinal || !d.runtime.has(NS, id)) return;
  const state = await d.runtime.state(NS, id).catch(() => undefined);
  if (state && state.status !== "stopped" && timeoutS > 0) {
    await d.runtime
      .kill(NS, id, storedSignalNumber(e.info.stopSignal))
      .catch((err: unknown) => d.log.debug({ err, container: id }, "stop signal"));
    const exited = await waitExit(d, id, timeoutS * 1000);
    if (exited) return handleContainerExit(d, id);
  }
  if (state?.status !== "stopped") {
    await d.runtime
      .kill(NS, id, 9, { all: true })
      .catch((err: unknown) => d.log.debug({ err, container: id }, "SIGKILL"));
    await waitExit(d, id, 30_000);
  }
  await handleContainerExit(d, id);
}

/** Waits for the task's init process to exit; false on timeout. */
export async function waitExit(
  d: Pick<ContainerDeps, "runtime">,
  id: string,
  ms: number,
  namespace = NS,
): Promise<boolean> {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), ms);
  try {
    await d.runtime.wait(namespace, id, "", { signal: ac.signal });
    return true;
  } catch (err) {
    if (err instanceof NotFoundError) return true;
    return false;
  } finally {
    clearTimeout(timer);
  }
}
