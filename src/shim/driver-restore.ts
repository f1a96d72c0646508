// A task created from a checkpoint image (CreateTaskRequest.checkpoint): Create runs nothing,
// Start restores the image under a monitor (`runc restore`), and a kill before Start just
// ends the pending restore. Everything else is the runtime's own driver.
import { join } from "node:path";

import type { CheckpointTaskRequest } from "../gen/containerd/runtime/v2/task/shim.js";
import type { Any } from "../gen/google/protobuf/any.js";
import type { ProcessDriver } from "./driver.js";
import type { ProcessLauncher } from "./launcher.js";
import type { Proc } from "./process.js";
import { runtimeLogPath } from "./runtime.js";
import { cgroupPathsOf } from "./stats.js";
import { type Task, nowExit } from "./task.js";

export class RestoreDriver implements ProcessDriver {
  constructor(
    private readonly inner: ProcessDriver,
    private readonly launcher: ProcessLauncher,
  ) {}

  get watchOom(): boolean {
    return this.inner.watchOom;
  }

  canStartAtCreate(_task: Task): boolean {
    return false;
  }

  /** Nothing runs until Start; the record (pid 0) is already saved. */
  async create(_task: Task): Promise<void> {}

  abortCreate(task: Task): void {
    this.inner.abortCreate(task);
  }

  async start(task: Task): Promise<void> {
    const proc = task.init;
    const logFile = runtimeLogPath(proc.stateDir);
    const argv = task.runtime.restoreArgv(
      task.id,
      task.bundle,
      proc.record.checkpoint,
      join(proc.stateDir, "criu-work"),
      join(proc.stateDir, "pid"),
      proc.record.terminal ? join(proc.stateDir, "console.sock") : undefined,
      logFile,
    );
    proc.record.pid = await this.launcher.spawn(task, proc, argv, logFile);
    task.cgroups = cgroupPathsOf(proc.record.pid);
  }

  startExec(task: Task, proc: Proc): Promise<void> {
    return this.inner.startExec(task, proc);
  }

  async kill(task: Task, signal: number, all: boolean): Promise<void> {
    // nothing runs yet: a pending restore just ends
    if (!task.init.record.started) return task.init.setExited(nowExit(128 + signal));
    await this.inner.kill(task, signal, all);
  }

  killExec(task: Task, proc: Proc, signal: number): Promise<void> {
    return this.inner.killExec(task, proc, signal);
  }

  afterRuntimeDelete(task: Task): Promise<void> {
    return this.inner.afterRuntimeDelete(task);
  }

  checkpoint(task: Task, req: CheckpointTaskRequest): Promise<void> {
    return this.inner.checkpoint(task, req);
  }

  stats(task: Task): Promise<Any | undefined> {
    return this.inner.stats(task);
  }

  reattach(task: Task, proc: Proc): Promise<void> {
    return this.inner.reattach(task, proc);
  }
}
