// A task as the shim serving it keeps it: the init process, its execs, the OCI runtime and
// the driver that runs its processes (driver.ts), plus the small fd helpers its life needs.
import { constants as fsc, closeSync, openSync, statSync, writeSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import type { CreateTaskRequest, ExecProcessRequest } from "../gen/containerd/runtime/v2/task/shim.js";

import type { ProcessDriver } from "./driver.js";
import type { ExitRecord } from "./monitor.js";
import { unmountAll } from "./mounts.js";
import type { Proc, ProcessRecord } from "./process.js";
import type { OciRuntime, RuntimeConfig } from "./runtime.js";

export interface Task {
  id: string;
  namespace: string;
  bundle: string;
  runtime: OciRuntime;
  driver: ProcessDriver;
  init: Proc;
  execs: Map<string, Proc>;
  /** controller -> cgroup path, captured while the init process lives */
  cgroups: Map<string, string> | undefined;
  /** containerd's per-task shim log fifo (<bundle>/log), when someone reads it */
  logFd: number | undefined;
  /**
   * A runsc sub-container's output fifos, held open from Create until its monitor has them
   * (at Start): whoever reads them must not see EOF before the process even started.
   */
  ioHold: number[];
  /**
   * Set while the task's Create runs (its runtime command may still be starting the process):
   * a Kill or Delete that comes meanwhile waits for it, or it would signal a process not there
   * yet, and the one the Create then starts would run on unsignalled (and a Wait hang).
   */
  creating?: Promise<void>;
}

/** Writes a line to the shim's own log and, when containerd reads it, the task's log fifo. */
export function taskLog(task: Task, log: (msg: string) => void, msg: string): void {
  log(`[${task.id}] ${msg}`);
  if (task.logFd === undefined) return;
  try {
    writeSync(
      task.logFd,
      `time="${new Date().toISOString()}" level=info msg=${JSON.stringify(msg)} runtime=io.containerd.berth.v2\n`,
    );
  } catch {
    closeQuietly(task.logFd);
    task.logFd = undefined;
  }
}

export function nowExit(status: number): ExitRecord {
  const now = Date.now();
  return { status, seconds: BigInt(Math.floor(now / 1000)), nanos: (now % 1000) * 1e6 };
}

/**
 * containerd (1.6+) reads the shim's log from the fifo <bundle>/log. The serving shim is
 * shared, so it writes each task's own lines into that task's fifo, when one is there.
 */
export function openLogFifo(bundle: string): number | undefined {
  try {
    return openSync(join(bundle, "log"), fsc.O_WRONLY | fsc.O_NONBLOCK);
  } catch {
    return undefined;
  }
}

/** Opens the fifos among `dests` (plain or fifo:// paths) read-write, as a monitor does. */
export function holdFifos(dests: string[]): number[] {
  const fds: number[] = [];
  for (const d of new Set(dests)) {
    if (!d || d.startsWith("file://") || d.startsWith("binary://")) continue;
    const path = d.startsWith("fifo://") ? d.slice("fifo://".length) : d;
    try {
      if (!statSync(path).isFIFO()) continue;
      fds.push(openSync(path, fsc.O_RDWR | fsc.O_NONBLOCK));
    } catch {
      // not there: the monitor reports it at Start
    }
  }
  return fds;
}

export function releaseFds(task: Task): void {
  for (const fd of task.ioHold.splice(0)) closeQuietly(fd);
}

export function closeQuietly(fd: number | undefined): void {
  if (fd === undefined) return;
  try {
    closeSync(fd);
  } catch {
    // already closed
  }
}

export function safeUnmount(target: string): void {
  try {
    unmountAll(target);
  } catch {
    // reported by the runtime's delete or left for `delete` to retry
  }
}

/** The init process's record for a Create request. */
export function initRecord(req: CreateTaskRequest, namespace: string, runtime: RuntimeConfig): ProcessRecord {
  return {
    namespace,
    id: req.id,
    execId: "",
    bundle: req.bundle,
    stdin: req.stdin,
    stdout: req.stdout,
    stderr: req.stderr,
    terminal: req.terminal,
    runtime,
    rootfs: req.rootfs.map((m) => ({ type: m.type, source: m.source, target: m.target, options: m.options })),
    checkpoint: req.checkpoint,
    pid: 0,
    started: false,
  };
}

/** The record of an exec's process, before its Start. */
export function execRecord(task: Task, req: ExecProcessRequest): ProcessRecord {
  return {
    namespace: task.namespace,
    id: req.id,
    execId: req.execId,
    bundle: task.bundle,
    stdin: req.stdin,
    stdout: req.stdout,
    stderr: req.stderr,
    terminal: req.terminal,
    runtime: task.runtime.config,
    rootfs: [],
    checkpoint: "",
    pid: 0,
    started: false,
  };
}

/**
 * Undoes a Create that failed part way (the task is already out of the table): the runtime's
 * container, the mounted rootfs (`rootfs`, when Create mounted it), the state dir, the fds.
 */
export async function undoCreate(task: Task, rootfs: string | undefined, stateDir: string): Promise<void> {
  task.init.openStartGate();
  task.driver.abortCreate(task);
  task.init.monitor?.close();
  releaseFds(task);
  await task.runtime.delete(task.id, true).catch(() => {});
  if (rootfs) safeUnmount(rootfs);
  await rm(stateDir, { recursive: true, force: true });
  closeQuietly(task.logFd);
}
