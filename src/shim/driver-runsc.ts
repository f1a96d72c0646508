// gVisor (runsc). Its processes live inside the sandbox: OOMs and stats are the sentry's, an
// exec's host pid is runsc's own process (signals go through `runsc exec`'s internal pid),
// and checkpoints are not offered. A sub-container of an existing sandbox (a pod's app
// container) is created detached: its process and stdio only come with `runsc start`, so its
// fifos are held open meanwhile; with a terminal, runsc hands the pty over at create, so a
// wrapper under its monitor waits at a gate for Start (runsc.ts).
import { readFile } from "node:fs/promises";
import { join } from "node:path";

import type { CheckpointTaskRequest } from "../gen/containerd/runtime/v2/task/shim.js";
import type { Any } from "../gen/google/protobuf/any.js";
import { FailedPreconditionError } from "../util/errors.js";
import { RuncDriver } from "./driver-runc.js";
import { Monitor } from "./monitor.js";
import type { Proc } from "./process.js";
import { RuntimeError, lastRuntimeError, runtimeError, runtimeLogPath } from "./runtime.js";
import {
  execInternalPidFile,
  killRunscExec,
  openGate,
  runscMetrics,
  subcontainerStartArgv,
  subcontainerTerminalArgv,
  terminalFiles,
  waitTerminalCreated,
} from "./runsc.js";
import { metricsAny } from "./stats.js";
import { type Task, holdFifos, releaseFds } from "./task.js";
import { traceRuntime } from "./trace.js";
import { sleep } from "../util/sleep.js";

export class RunscDriver extends RuncDriver {
  override readonly watchOom: boolean = false;

  override canStartAtCreate(_task: Task): boolean {
    return false;
  }

  protected override execPidFile(proc: Proc): string | undefined {
    return execInternalPidFile(proc.stateDir);
  }

  override async killExec(task: Task, proc: Proc, signal: number): Promise<void> {
    // The exec's pid is runsc's host-side process: the signal must reach the sandbox.
    await killRunscExec(task.runtime, task.id, proc.stateDir, proc.pid, signal);
  }

  override async checkpoint(_task: Task, _req: CheckpointTaskRequest): Promise<void> {
    throw new FailedPreconditionError("checkpoint through berth's shim is not supported for runsc");
  }

  override async stats(task: Task): Promise<Any | undefined> {
    // gVisor's processes run inside its sandbox: only the sentry can account for them.
    if (task.init.exit) throw new FailedPreconditionError(`task ${task.id} has exited`);
    return metricsAny(await runscMetrics(task.runtime, task.id));
  }
}

export class RunscSubcontainerDriver extends RunscDriver {
  override async create(task: Task): Promise<void> {
    const { record: r, stateDir } = task.init;
    if (r.terminal) {
      r.pid = await this.createWithTerminal(task, runtimeLogPath(stateDir));
      await task.init.save();
      return;
    }
    // No monitor yet: the container's process and stdio only come with `runsc start`.
    task.ioHold = holdFifos([r.stdout, r.stderr]);
    const pidFile = join(stateDir, "sandbox.pid");
    await task.runtime.createDetached(task.id, task.bundle, pidFile);
    r.pid = Number((await readFile(pidFile, "utf8")).trim()) || 0;
    if (r.pid <= 0) throw new RuntimeError(`runsc create wrote no pid to ${pidFile}`);
    await task.init.save();
  }

  /**
   * Creates the sub-container with a terminal: runsc sends the pty's master at create, so its
   * monitor runs from now on, through a wrapper that waits for Start (runsc.ts). Returns the
   * sandbox pid runsc reports for it.
   */
  private async createWithTerminal(task: Task, logFile: string): Promise<number> {
    const proc = task.init;
    const stdio = await this.launcher.stdio(proc.record);
    return traceRuntime("runsc create", { "container.id": task.id, "runtime.via": "berth-monitor" }, async () => {
      const monitor = Monitor.spawn(this.launcher.monitorBin, {
        stateDir: proc.stateDir,
        argv: subcontainerTerminalArgv(task.runtime, task.id, task.bundle, proc.stateDir, logFile),
        consoleSocket: terminalFiles(proc.stateDir).consoleSocket,
        ...stdio,
        logFd: this.launcher.logFd,
      });
      this.launcher.watch(task, proc, monitor);
      try {
        return await waitTerminalCreated(proc.stateDir, monitor.ready());
      } catch (err) {
        const msg = (await lastRuntimeError(logFile)) || (err as Error).message;
        throw runtimeError("runsc create", msg);
      }
    });
  }

  override abortCreate(task: Task): void {
    if (task.init.record.terminal) openGate(task.init.stateDir, "abort");
  }

  override async start(task: Task): Promise<void> {
    const proc = task.init;
    const logFile = runtimeLogPath(proc.stateDir);
    if (proc.record.terminal) {
      // The monitor from Create holds the pty; its wrapper starts the container at the gate.
      const monitor = proc.monitor;
      if (!monitor || !openGate(proc.stateDir, "start")) {
        throw new FailedPreconditionError(
          `task ${task.id}: its runsc create wrapper is gone; delete and create it again`,
        );
      }
      proc.record.pid = await traceRuntime(
        "runsc start",
        { "container.id": task.id, "runtime.via": "berth-monitor" },
        () =>
          monitor.ready().catch(async () => {
            throw runtimeError("runsc start", (await lastRuntimeError(logFile)) || "runsc start failed");
          }),
      );
      return;
    }
    const argv = subcontainerStartArgv(task.runtime, task.id, join(proc.stateDir, "pid"), logFile);
    try {
      proc.record.pid = await this.launcher.spawn(task, proc, argv, logFile, "start");
    } finally {
      releaseFds(task); // the monitor holds the fifos now (or the start failed)
    }
  }

  override async afterRuntimeDelete(task: Task): Promise<void> {
    const proc = task.init;
    if (proc.record.terminal && !proc.record.started && proc.monitor) {
      // Its create wrapper waits at the gate: end it, and with it the monitor.
      openGate(proc.stateDir, "abort");
      await Promise.race([proc.monitor.ready().catch(() => {}), sleep(2000, { unref: true })]);
      return;
    }
    await super.afterRuntimeDelete(task);
  }

  override async reattach(task: Task, proc: Proc): Promise<void> {
    if (!proc.execId && !proc.record.started) {
      // Created in the sandbox, no process of its own yet; one with a terminal has its monitor
      // (holding the pty) waiting for Start.
      if (proc.record.terminal) this.launcher.watch(task, proc, await Monitor.adopt(proc.stateDir, 0));
      return;
    }
    await super.reattach(task, proc);
  }
}
