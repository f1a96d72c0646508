// The driver for runc and crun (and the base of the others): the monitor runs the runtime's
// `create` and `exec`; `start` and `kill` are plain runtime commands; stats come from the
// task's cgroups.
import { constants as fsc } from "node:fs";
import { access, mkdir } from "node:fs/promises";
import { join } from "node:path";

import { CheckpointOptions } from "../gen/containerd/runc/options/oci.js";
import type { CheckpointTaskRequest } from "../gen/containerd/runtime/v2/task/shim.js";
import type { Any } from "../gen/google/protobuf/any.js";
import { FailedPreconditionError, InvalidArgumentError, NotFoundError } from "../util/errors.js";
import type { ProcessDriver } from "./driver.js";
import type { ProcessLauncher } from "./launcher.js";
import { Monitor } from "./monitor.js";
import type { Proc } from "./process.js";
import { runtimeLogPath } from "./runtime.js";
import { cgroupPathsOf, collectMetrics, metricsAny } from "./stats.js";
import type { Task } from "./task.js";
import { sleep } from "../util/sleep.js";

export class RuncDriver implements ProcessDriver {
  readonly watchOom: boolean = true;

  constructor(protected readonly launcher: ProcessLauncher) {}

  canStartAtCreate(task: Task): boolean {
    // runc and crun (and runtimes that take their command line) have `run --detach`; gVisor's
    // drivers override this.
    return task.runtime.kind !== "runsc";
  }

  async create(task: Task, andStart = false): Promise<void> {
    const { record: r, stateDir } = task.init;
    const logFile = runtimeLogPath(stateDir);
    const argv = task.runtime.createArgv(
      task.id,
      task.bundle,
      join(stateDir, "pid"),
      r.terminal ? join(stateDir, "console.sock") : undefined,
      logFile,
      andStart,
    );
    r.pid = await this.launcher.spawn(task, task.init, argv, logFile, andStart ? "run" : "create");
    // Read now, while the process surely lives (stats of an exited task still need its cgroups).
    task.cgroups = cgroupPathsOf(r.pid);
    await task.init.save();
  }

  abortCreate(_task: Task): void {}

  async start(task: Task): Promise<void> {
    await task.runtime.start(task.id);
  }

  async startExec(task: Task, proc: Proc): Promise<void> {
    const logFile = runtimeLogPath(proc.stateDir);
    const argv = task.runtime.execArgv(
      task.id,
      join(proc.stateDir, "process.json"),
      join(proc.stateDir, "pid"),
      proc.record.terminal ? join(proc.stateDir, "console.sock") : undefined,
      logFile,
      this.execPidFile(proc),
    );
    proc.record.pid = await this.launcher.spawn(task, proc, argv, logFile);
  }

  /** Where the runtime writes the exec's pid inside the container, if it does. */
  protected execPidFile(_proc: Proc): string | undefined {
    return undefined;
  }

  async kill(task: Task, signal: number, all: boolean): Promise<void> {
    await task.runtime.kill(task.id, signal, all);
  }

  async killExec(_task: Task, proc: Proc, signal: number): Promise<void> {
    try {
      process.kill(proc.pid, signal);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ESRCH")
        throw new NotFoundError(`process ${proc.execId} already finished`);
      throw err;
    }
  }

  async afterRuntimeDelete(task: Task): Promise<void> {
    const proc = task.init;
    // A created, never started init: the runtime killed it; take its exit from the monitor.
    if (!proc.exit && proc.monitor) await Promise.race([proc.wait(), sleep(2000, { unref: true })]);
  }

  async checkpoint(task: Task, req: CheckpointTaskRequest): Promise<void> {
    const criu = task.runtime.config.criuPath || (await which("criu"));
    if (!criu) throw new FailedPreconditionError("checkpoint needs CRIU: install criu (Debian package `criu`)");
    if (task.init.state !== "running" && task.init.state !== "paused") {
      throw new FailedPreconditionError(`task ${req.id} is not running`);
    }
    const o =
      req.options && req.options.value.length > 0
        ? CheckpointOptions.decode(req.options.value)
        : CheckpointOptions.fromPartial({});
    const imagePath = o.imagePath || req.path;
    if (!imagePath) throw new InvalidArgumentError("checkpoint: an image path is required");
    const workPath = o.workPath || join(task.init.stateDir, "criu-work");
    await mkdir(imagePath, { recursive: true });
    await mkdir(workPath, { recursive: true });
    await task.runtime.checkpoint(task.id, {
      imagePath,
      workPath,
      exit: o.exit,
      openTcp: o.openTcp,
      externalUnixSockets: o.externalUnixSockets,
      terminal: o.terminal || task.init.record.terminal,
      fileLocks: o.fileLocks,
      emptyNamespaces: o.emptyNamespaces,
      cgroupsMode: o.cgroupsMode,
      parentPath: o.parentPath,
    });
  }

  async stats(task: Task): Promise<Any | undefined> {
    let paths = task.cgroups;
    if (!paths || paths.size === 0) {
      if (task.init.pid > 0 && !task.init.exit) paths = task.cgroups = cgroupPathsOf(task.init.pid);
    }
    if (!paths || paths.size === 0) throw new NotFoundError(`no cgroup known for task ${task.id}`);
    return metricsAny(await collectMetrics(paths));
  }

  async reattach(task: Task, proc: Proc): Promise<void> {
    const r = proc.record;
    const monitor = await Monitor.adopt(proc.stateDir, r.pid);
    this.launcher.watch(task, proc, monitor);
    if (monitor.exit) {
      const told = this.launcher.exited(task, proc, monitor.exit);
      // An exit held until Start (start-at-once.ts, holdAfterRestart) is told after that Start,
      // which cannot come before the re-adoption ends.
      if (proc.starting) void told;
      else await told;
    }
    if (proc.exit) return;
    let state: "created" | "running" | "paused" = r.started ? "running" : "created";
    if (!proc.execId) {
      // the runtime knows whether it is paused
      const st = await task.runtime.state(task.id).catch(() => undefined);
      if (st?.status === "paused") state = "paused";
      else if (st?.status === "created") state = "created";
    }
    if (state === "running") proc.to("adoptRunning");
    else if (state === "paused") proc.to("adoptPaused");
  }
}

async function which(cmd: string): Promise<string | undefined> {
  for (const dir of (process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin").split(":")) {
    const p = join(dir, cmd);
    try {
      await access(p, fsc.X_OK);
      return p;
    } catch {
      // next
    }
  }
  return undefined;
}
