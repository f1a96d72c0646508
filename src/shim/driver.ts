// How a task's processes are run. TaskService routes each call to its task's ProcessDriver;
// the drivers hold what differs between runtimes:
//   driver-runc.ts     runc and crun: the monitor runs `create` (or `run --detach`), `exec`;
//                      `start` is the runtime's
//   driver-runsc.ts    gVisor: a sandbox container, and a sub-container of an existing sandbox
//                      (created detached, its process and stdio only come with start)
//   driver-restore.ts  a task created from a checkpoint: nothing runs until Start restores it
// Reattaching to processes after a shim restart is reattach.ts, through each driver's reattach().
import type { CheckpointTaskRequest } from "../gen/containerd/runtime/v2/task/shim.js";
import type { Any } from "../gen/google/protobuf/any.js";
import { RuncDriver } from "./driver-runc.js";
import { RestoreDriver } from "./driver-restore.js";
import { RunscDriver, RunscSubcontainerDriver } from "./driver-runsc.js";
import type { ProcessLauncher } from "./launcher.js";
import type { Proc, ProcessRecord } from "./process.js";
import type { OciRuntime } from "./runtime.js";
import { isSubcontainerBundle } from "./runsc.js";
import type { Task } from "./task.js";

export interface ProcessDriver {
  /** Whether the init's monitor watches its cgroup for OOM kills (gVisor's happen inside its sandbox). */
  readonly watchOom: boolean;
  /**
   * Whether create() can also start the init process in the same runtime command (runc and
   * crun: `run --detach`); runsc and a restore keep create and start apart.
   */
  canStartAtCreate(task: Task): boolean;
  /**
   * Creates the init process (its pid goes into the record, which is saved); with `andStart`
   * (only when canStartAtCreate) it runs it at once.
   */
  create(task: Task, andStart?: boolean): Promise<void>;
  /** Releases what a failed create holds beyond what the service undoes (runtime delete, mounts, dirs). */
  abortCreate(task: Task): void;
  /** Starts the created init process (its pid goes into the record). */
  start(task: Task): Promise<void>;
  /** Runs an added exec process (its pid goes into the record). */
  startExec(task: Task, proc: Proc): Promise<void>;
  /** Signals the init process, or with `all` every process of the task. */
  kill(task: Task, signal: number, all: boolean): Promise<void>;
  /** Signals a started exec process. */
  killExec(task: Task, proc: Proc, signal: number): Promise<void>;
  /** After the runtime deleted the container: lets the init's monitor finish. */
  afterRuntimeDelete(task: Task): Promise<void>;
  checkpoint(task: Task, req: CheckpointTaskRequest): Promise<void>;
  /** Resource usage as the Any the Stats call answers. */
  stats(task: Task): Promise<Any | undefined>;
  /** Finds a recorded process again after a shim restart: its monitor, and its state. */
  reattach(task: Task, proc: Proc): Promise<void>;
}

function baseDriver(launcher: ProcessLauncher, runtime: OciRuntime): ProcessDriver {
  return runtime.kind === "runsc" ? new RunscDriver(launcher) : new RuncDriver(launcher);
}

/** The driver for a task being created; marks the record of a runsc sub-container as one. */
export async function driverForCreate(
  launcher: ProcessLauncher,
  runtime: OciRuntime,
  record: ProcessRecord,
): Promise<ProcessDriver> {
  if (record.checkpoint) return new RestoreDriver(baseDriver(launcher, runtime), launcher);
  if (runtime.kind === "runsc" && (await isSubcontainerBundle(record.bundle))) {
    record.runscSubcontainer = true;
    return new RunscSubcontainerDriver(launcher);
  }
  return baseDriver(launcher, runtime);
}

/** The driver of a task found again in its record after a shim restart. */
export function driverForRecord(launcher: ProcessLauncher, runtime: OciRuntime, record: ProcessRecord): ProcessDriver {
  if (record.checkpoint) return new RestoreDriver(baseDriver(launcher, runtime), launcher);
  if (record.runscSubcontainer) return new RunscSubcontainerDriver(launcher);
  return baseDriver(launcher, runtime);
}
