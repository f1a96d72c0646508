// The streaming server's backend for real containers and pods (the seam is
// streaming/backend.ts): exec runs a process in the container through its shim with fifos for
// its stdio, as ExecSync does but streamed with backpressure; attach joins a running container's
// live output (a tee of its log pump) and stdin; port forwarding connects inside the pod's
// network namespace. Semantics follow containerd's CRI plugin (container_exec.go,
// container_attach.go, sandbox_portforward_linux.go).
import { randomBytes } from "node:crypto";
import { mkdirSync } from "node:fs";
import { rm } from "node:fs/promises";
import net from "node:net";
import { join } from "node:path";
import type { Duplex } from "node:stream";
import { ContainerState } from "../gen/cri/runtime/v1/api.js";
import type { Spec } from "../oci/index.js";
import type { ExecResult, ExecStreams, StreamingBackend, TerminalSize } from "../streaming/backend.js";
import * as sys from "../sys/index.js";
import { FailedPreconditionError } from "../util/errors.js";
import type { ContainerDeps } from "./container/deps.js";
import { CRI_NAMESPACE as NS } from "./context.js";
import { FifoSource, FifoWriter } from "./io/fifo.js";
import { feedStdin } from "./io/stdin-feed.js";
import type { SandboxDeps } from "./sandbox/deps.js";
import { type ContainerEntry, type SandboxEntry, containerView } from "./store/index.js";

/** After an exec exits, how long its output may stay silent (with a client that keeps up) before the session ends. */
const DRAIN_STALL_MS = 3000;
/** How long a killed exec process may take to be reaped before it is deleted anyway. */
const KILL_WAIT_MS = 10_000;
/** Bound on the blocking connect inside a pod's netns (loopback answers at once). */
const CONNECT_TIMEOUT_MS = 5000;
/**
 * Output an attach client may have queued before more is dropped for it: the container's output
 * goes to the log at the container's pace, and a slow attach client must not hold it back.
 */
export const ATTACH_BUFFER_LIMIT = 1024 * 1024;

export interface CriStreamingDeps {
  containers: ContainerDeps;
  sandboxes: Pick<SandboxDeps, "store">;
}

/** The container `ref` names, if it is running (NotFound / FailedPrecondition otherwise). */
export function runningContainer(containers: Pick<ContainerDeps, "store">, ref: string): ContainerEntry {
  const e = containers.store.resolve(ref);
  if (containerView(e.status).state !== ContainerState.CONTAINER_RUNNING) {
    throw new FailedPreconditionError(`container ${e.id} is not running`);
  }
  return e;
}

/** The pod `ref` names, if it is ready (NotFound / FailedPrecondition otherwise). */
export function readyPod(sandboxes: Pick<SandboxDeps, "store">, ref: string): SandboxEntry {
  const e = sandboxes.store.resolve(ref);
  const phase = e.status.phase;
  if (phase !== "ready") throw new FailedPreconditionError(`pod sandbox ${e.id} is not ready (${phase})`);
  // As containerd: a pod whose sandbox process died is NOTREADY until kubelet stops it.
  if (e.status.exitedAt > 0n)
    throw new FailedPreconditionError(`pod sandbox ${e.id} is not ready (its sandbox process exited)`);
  return e;
}

/** The exec's OCI Process: the container's own (user, env, cwd, capabilities) with `cmd`. */
export function execProcess(base: Spec["process"], cmd: string[], tty: boolean): Spec["process"] {
  const env = [...base.env];
  // containerd gives a terminal exec TERM=xterm unless the container sets TERM itself.
  if (tty && !env.some((e) => e.startsWith("TERM="))) env.push("TERM=xterm");
  return { ...base, args: [...cmd], env, terminal: tty };
}

function abortError(): Error {
  return new Error("the streaming client went away");
}

export class CriStreamingBackend implements StreamingBackend {
  /** Exec sessions still running or cleaning up, so shutdown can let their cleanup finish. */
  private readonly execs = new Set<Promise<unknown>>();

  constructor(private readonly deps: CriStreamingDeps) {}

  /**
   * Waits (bounded) for exec sessions to finish their cleanup; call after the streaming server
   * stopped (which aborts them) and before the shims are let go, so no exec process outlives
   * its session.
   */
  async close(timeoutMs = 15_000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled([...this.execs]),
      new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs))),
    ]);
    clearTimeout(timer);
  }

  private get shims() {
    return this.deps.containers.runtime;
  }

  // ---- exec ----------------------------------------------------------------------------

  exec(containerId: string, cmd: string[], streams: ExecStreams, signal: AbortSignal): Promise<ExecResult> {
    const run = this.runExec(containerId, cmd, streams, signal);
    this.execs.add(run);
    void run.catch(() => {}).finally(() => this.execs.delete(run));
    return run;
  }

  private async runExec(
    containerId: string,
    cmd: string[],
    streams: ExecStreams,
    signal: AbortSignal,
  ): Promise<ExecResult> {
    const { containers } = this.deps;
    const id = runningContainer(containers, containerId).id;
    const spec = containers.bundles.readSpec(id);
    const processSpec = execProcess(spec.process, cmd, streams.tty);
    const execId = randomBytes(8).toString("hex");
    const dir = containers.bundles.io(id).dir;
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const fifo = (s: string) => join(dir, `stream-${execId}-${s}`);

    // Only the streams the client asked for get a fifo; the others are /dev/null in the shim.
    const files: string[] = [];
    let stdout: FifoSource | undefined;
    let stderr: FifoSource | undefined;
    let stdin: FifoWriter | undefined;
    let added = false;
    let started = false;
    let exited = false;
    let detachStdin = () => {};
    try {
      if (signal.aborted) throw abortError();
      if (streams.stdout) {
        files.push(fifo("stdout"));
        stdout = new FifoSource(fifo("stdout"), streams.stdout);
      }
      if (streams.stderr && !streams.tty) {
        files.push(fifo("stderr"));
        stderr = new FifoSource(fifo("stderr"), streams.stderr);
      }
      if (streams.stdin) {
        files.push(fifo("stdin"));
        stdin = new FifoWriter(fifo("stdin"));
      }
      await this.shims.exec(NS, id, execId, {
        spec: processSpec,
        stdin: stdin?.path ?? "",
        stdout: stdout?.path ?? "",
        stderr: stderr?.path ?? "",
        terminal: streams.tty,
      });
      added = true;
      if (signal.aborted) throw abortError();
      await this.shims.start(NS, id, execId);
      started = true;
      // The shim has its ends of the fifos open once the process started.
      stdout?.release();
      stderr?.release();
      if (streams.stdin && stdin) {
        detachStdin = feedStdin(streams.stdin, stdin, {
          onEnd: async () => {
            await stdin?.close();
            await this.shims.closeIO(NS, id, execId).catch(() => {});
          },
          holdUntil: streams.tty ? () => streams.resize.settled() : undefined,
        });
      }
      if (streams.tty) void this.applyResizes(id, execId, streams.resize, () => exited);

      let exitCode: number;
      try {
        exitCode = (await this.shims.wait(NS, id, execId, { signal })).exitStatus;
      } catch (err) {
        if (!signal.aborted) throw err;
        throw abortError();
      }
      exited = true;
      await drain(
        [stdout, stderr].filter((s) => s !== undefined),
        signal,
      );
      return { exitCode };
    } finally {
      exited = true;
      detachStdin();
      if (added) await this.reap(id, execId, started);
      stdout?.close();
      stderr?.close();
      stdin?.destroy();
      await Promise.all(files.map((f) => rm(f, { force: true })));
    }
  }

  /** Kills the exec process if it still runs, waits for it (bounded) and deletes it from the shim. */
  private async reap(id: string, execId: string, started: boolean): Promise<void> {
    // One whose start failed never ran: there is nothing to kill or wait for.
    const state = started ? await this.shims.state(NS, id, execId).catch(() => undefined) : undefined;
    if (state && state.status !== "stopped") {
      await this.shims.kill(NS, id, 9, { execId }).catch(() => {});
      const ac = new AbortController();
      const timer = setTimeout(() => ac.abort(), KILL_WAIT_MS);
      await this.shims.wait(NS, id, execId, { signal: ac.signal }).catch(() => {});
      clearTimeout(timer);
    }
    await this.shims.deleteProcess(NS, id, execId).catch((err: unknown) => {
      this.deps.containers.log.debug({ err, container: id, execId }, "deleting a streamed exec process");
    });
  }

  private async applyResizes(
    id: string,
    execId: string,
    sizes: AsyncIterable<TerminalSize>,
    done: () => boolean,
  ): Promise<void> {
    for await (const { width, height } of sizes) {
      if (done()) break;
      await this.shims.resizePty(NS, id, execId, width, height).catch(() => {});
    }
  }

  // ---- attach --------------------------------------------------------------------------

  async attach(containerId: string, streams: ExecStreams, signal: AbortSignal): Promise<void> {
    const e = runningContainer(this.deps.containers, containerId);
    const id = e.id;
    const io = e.io;
    if (!io) throw new FailedPreconditionError(`container ${id} has no live output to attach to`);
    const config = e.config;

    let dropped = 0;
    const unsubscribe = io.subscribe((stream, chunk) => {
      // With a tty the container has one output stream, which is the client's stdout.
      const dest = stream === "stdout" || config.tty ? streams.stdout : streams.stderr;
      if (!dest || dest.destroyed || dest.writableEnded) return;
      if (dest.writableLength > ATTACH_BUFFER_LIMIT) {
        dropped += chunk.length;
        return;
      }
      dest.write(chunk);
    });

    let detachStdin = () => {};
    if (streams.stdin) {
      const target = io.stdin;
      if (!target)
        streams.stdin.resume(); // the container has no stdin: what the client sends goes nowhere
      else {
        detachStdin = feedStdin(streams.stdin, target, {
          onEnd: async () => {
            // stdin_once: the first attach session that closes stdin closes the container's.
            if (!config.stdinOnce) return;
            await target.close();
            await this.shims.closeIO(NS, id).catch(() => {});
          },
          holdUntil: config.tty ? () => streams.resize.settled() : undefined,
        });
      }
    }
    let over = false;
    if (config.tty) {
      void (async () => {
        for await (const { width, height } of streams.resize) {
          if (over) break;
          await this.shims.resizePty(NS, id, "", width, height).catch(() => {});
        }
      })();
    }
    try {
      // Until the container's output ends (it exited) or the client goes away.
      await new Promise<void>((resolve) => {
        if (signal.aborted) return resolve();
        signal.addEventListener("abort", () => resolve(), { once: true });
        void io.done.then(() => resolve());
      });
    } finally {
      over = true;
      unsubscribe();
      detachStdin();
      if (dropped > 0)
        this.deps.containers.log.debug({ container: id, dropped }, "attach client too slow: output dropped for it");
    }
  }

  // ---- port forward --------------------------------------------------------------------

  async portForward(podSandboxId: string, port: number, stream: Duplex, signal: AbortSignal): Promise<void> {
    const pod = readyPod(this.deps.sandboxes, podSandboxId);
    if (signal.aborted) throw abortError();
    // A pod with its own network namespace is reached on its loopback from inside it; a
    // host-network pod shares the host's.
    const netnsPath = pod.info.netnsPath;
    const sock = netnsPath
      ? new net.Socket({
          fd: sys.connectInNetns(netnsPath, "localhost", port, CONNECT_TIMEOUT_MS),
          readable: true,
          writable: true,
        })
      : await connectTcp("127.0.0.1", port);
    return new Promise<void>((resolve, reject) => {
      const abort = () => sock.destroy();
      signal.addEventListener("abort", abort, { once: true });
      let failure: Error | undefined;
      sock.on("error", (err) => (failure ??= err));
      stream.pipe(sock);
      sock.pipe(stream);
      sock.once("close", () => {
        signal.removeEventListener("abort", abort);
        stream.unpipe(sock);
        if (failure) reject(failure);
        else resolve();
      });
    });
  }
}

/**
 * Waits until every output fifo reached EOF after the process exited. Output held back by a
 * slow client is always waited for; a fifo that stays silent (a background child in the
 * container keeps it open) ends the wait after DRAIN_STALL_MS.
 */
async function drain(sources: FifoSource[], signal: AbortSignal): Promise<void> {
  if (sources.length === 0) return;
  let timer: NodeJS.Timeout | undefined;
  const stalled = new Promise<void>((resolve) => {
    timer = setInterval(() => {
      if (signal.aborted) return resolve();
      if (sources.some((s) => s.waitingForClient)) return;
      const last = Math.max(...sources.map((s) => s.lastDataAt));
      if (Date.now() - last > DRAIN_STALL_MS) resolve();
    }, 100);
  });
  try {
    await Promise.race([Promise.all(sources.map((s) => s.done)), stalled]);
  } finally {
    clearInterval(timer);
  }
}

function connectTcp(host: string, port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host, port });
    const timer = setTimeout(() => sock.destroy(new Error(`connect to ${host}:${port} timed out`)), CONNECT_TIMEOUT_MS);
    sock.once("connect", () => {
      clearTimeout(timer);
      sock.off("error", reject);
      resolve(sock);
    });
    sock.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}
