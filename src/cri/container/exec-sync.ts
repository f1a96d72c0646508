// ExecSync (containerd's container_execsync.go): runs a command in a running container and
// returns its output (at most EXEC_OUTPUT_LIMIT per stream) and exit code; on timeout the
// process is killed and the caller gets DEADLINE_EXCEEDED at once.
import { randomBytes } from "node:crypto";
import { ContainerState } from "../../gen/cri/runtime/v1/api.js";
import { DeadlineExceededError, FailedPreconditionError, InvalidArgumentError } from "../../util/errors.js";
import { sleep } from "../../util/sleep.js";
import { CRI_NAMESPACE as NS } from "../context.js";
import { ExecCapture } from "../io/container-logger.js";
import { containerView } from "../store/index.js";
import type { ContainerDeps } from "./deps.js";

/** ExecSync output kept per stream (kubelet's gRPC limit is 16 MiB per message). */
export const EXEC_OUTPUT_LIMIT = 16 * 1024 * 1024;

export interface ExecSyncResult {
  stdout: Buffer;
  stderr: Buffer;
  exitCode: number;
}

export async function execSync(
  d: ContainerDeps,
  ref: string,
  cmd: string[],
  timeoutS: number,
  signal: AbortSignal,
): Promise<ExecSyncResult> {
  const e = d.store.resolve(ref);
  const id = e.id;
  if (cmd.length === 0) throw new InvalidArgumentError("exec needs a command");
  if (containerView(e.status).state !== ContainerState.CONTAINER_RUNNING)
    throw new FailedPreconditionError(`container ${id} is not running`);
  const spec = d.bundles.readSpec(id);
  const processSpec = { ...spec.process, args: cmd, terminal: false };
  const execId = randomBytes(8).toString("hex");
  // ExecCapture makes the io dir if needed.
  const cap = new ExecCapture(d.bundles.io(id).dir, execId, EXEC_OUTPUT_LIMIT);
  // Whether the shim has the exec process, and whether its cleanup is still this call's (a
  // timeout hands it to the background).
  let added = false;
  let handedOff = false;
  try {
    await d.runtime.exec(NS, id, execId, { spec: processSpec, stdout: cap.path("stdout"), stderr: cap.path("stderr") });
    added = true;
    // Wait is asked before Start, as containerd does: the exit comes back the moment the shim
    // hears of it, instead of after Start's answer and another round trip.
    const ac = new AbortController();
    const exited = d.runtime.wait(NS, id, execId, { signal: ac.signal });
    exited.catch(() => {}); // awaited below; a failed Start aborts it
    try {
      await d.runtime.start(NS, id, execId);
    } catch (err) {
      ac.abort();
      throw err;
    }
    // The shim opens the exec's fifos by the time the process has started.
    cap.release();
    const onAbort = () => ac.abort();
    signal.addEventListener("abort", onAbort, { once: true });
    const timer = timeoutS > 0 ? setTimeout(() => ac.abort(), timeoutS * 1000) : undefined;
    let exitCode: number;
    let timedOut = false;
    try {
      exitCode = (await exited).exitStatus;
    } catch (err) {
      if (!ac.signal.aborted) throw err;
      // Timed out (or the caller went away): kill the exec process and report in time.
      timedOut = true;
      exitCode = -1;
      await d.runtime.kill(NS, id, 9, { execId }).catch(() => {});
    } finally {
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
    }
    if (timedOut) {
      // Collect the process in the background; the caller gets its answer now.
      void d.runtime
        .wait(NS, id, execId)
        .then(() => d.runtime.deleteProcess(NS, id, execId))
        .catch(() => {})
        .finally(() => void cap.close());
      handedOff = true;
      throw new DeadlineExceededError(`command ${JSON.stringify(cmd)} timed out after ${timeoutS}s`);
    }
    await Promise.race([cap.done, sleep(2000)]);
    return { stdout: Buffer.concat(cap.stdout), stderr: Buffer.concat(cap.stderr), exitCode };
  } finally {
    // The caller has its answer first: the exec's Delete in the shim and the fifos' removal
    // follow in the background (containerd's execsync waits for its Delete, a round trip to
    // the shim on every call). Nothing the caller can see depends on them: the exec id is this
    // call's own, and a Delete that comes after the container's task is gone finds nothing to do.
    if (!handedOff) void cleanupExec(d, id, execId, added, cap);
  }
}

async function cleanupExec(
  d: ContainerDeps,
  id: string,
  execId: string,
  added: boolean,
  cap: ExecCapture,
): Promise<void> {
  try {
    if (added) await d.runtime.deleteProcess(NS, id, execId).catch(() => {});
  } finally {
    await cap.close().catch(() => {});
  }
}
