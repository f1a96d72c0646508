// The seam between the CRI layer and the runtime: what berthd's upper layers may ask of
// tasks in shims, and the types those calls speak. ShimManager (manager.ts) implements it;
// CRI unit tests hand the operations a fake. Every call names a task by (namespace, id);
// an exec process additionally by its exec id ("" is the task's init process).
import type { Metrics as CgroupsV1Metrics } from "../gen/cgroups/stats/v1/metrics.js";
import type { Metrics as CgroupsV2Metrics } from "../gen/cgroups/stats/v2/metrics.js";
import type { Mount } from "../gen/containerd/types/mount.js";
import type { ProcessInfo } from "../gen/containerd/types/task/task.js";
import type { Any } from "../gen/google/protobuf/any.js";
import type { EventListener } from "./events.js";
import type { ShimRecord } from "./records.js";

export interface CreateTaskOptions {
  namespace: string;
  id: string;
  /** Absolute OCI bundle path holding config.json; its last element must equal `id` (containerd's layout, which the runc shim's delete relies on). */
  bundle: string;
  rootfs?: Mount[];
  /** IO as containerd passes it: fifo paths, file:// or binary:// URIs; "" for none. */
  stdin?: string;
  stdout?: string;
  stderr?: string;
  terminal?: boolean;
  /** Runtime handler name; "" or undefined means the default handler. */
  handler?: string;
  /** Pod sandbox id (recorded; the runc shim groups by the sandbox-id annotation in config.json). */
  sandboxId?: string;
  /**
   * The caller Starts the task right after Create with nothing in between that needs it created
   * but not started: berth's shim may then run it at once (one runtime command instead of two)
   * and answer that Start without running anything. Start must still be called.
   */
  startAtOnce?: boolean;
}

export interface CreatedTask {
  pid: number;
  /** The serving shim's ttrpc address. */
  address: string;
}

export interface ExecOptions {
  /** The OCI runtime-spec Process to run. */
  spec: object;
  stdin?: string;
  stdout?: string;
  stderr?: string;
  terminal?: boolean;
}

export type TaskStatus = "unknown" | "created" | "running" | "stopped" | "paused" | "pausing";

export interface TaskState {
  id: string;
  execId: string;
  bundle: string;
  pid: number;
  status: TaskStatus;
  stdin: string;
  stdout: string;
  stderr: string;
  terminal: boolean;
  exitStatus: number;
  exitedAt: Date | undefined;
  /** Set when the manager, not the shim, decided the state: the shim is gone. */
  reason?: string;
}

export interface ExitResult {
  pid: number;
  exitStatus: number;
  exitedAt: Date;
  /** Set when the shim is gone and the manager reports the exit itself. */
  reason?: string;
}

export interface TaskStats {
  typeUrl: string;
  /** Decoded cgroups v1 metrics (type io.containerd.cgroups.v1.Metrics). */
  v1?: CgroupsV1Metrics;
  /** Decoded cgroups v2 metrics (type io.containerd.cgroups.v2.Metrics). */
  v2?: CgroupsV2Metrics;
  raw: Any | undefined;
}

export interface ShimInfo {
  shimPid: number;
  taskPid: number;
  version: string;
  address: string;
}

export interface RecoveredTask {
  namespace: string;
  id: string;
  address: string;
  /** live: the shim answered; restarted: berth's shim was started again and answered; dead: reported exited. */
  outcome: "live" | "restarted" | "dead";
  status: TaskStatus;
  reason?: string;
}

/** Tasks in shims, as the CRI layer uses them. */
export interface TaskRuntime {
  /** Subscribes to task events (from shims, and exits reported for dead shims). Returns the unsubscribe function. */
  onEvent(fn: EventListener): () => void;
  /** Whether the task is known (created and not yet deleted; its shim may be dead). O(1). */
  has(namespace: string, id: string): boolean;
  /** The task's durable record, or undefined. */
  record(namespace: string, id: string): ShimRecord | undefined;
  /** Every known task, as its record. */
  list(): ShimRecord[];
  /** Reattaches to the shims of every recorded task (berthd start). */
  recover(): Promise<RecoveredTask[]>;

  createTask(req: CreateTaskOptions): Promise<CreatedTask>;
  /** Starts a created task (execId "") or exec process; resolves with its pid. */
  start(namespace: string, id: string, execId?: string): Promise<number>;
  /** Adds an exec process to a running task (start it with start(namespace, id, execId)). */
  exec(namespace: string, id: string, execId: string, o: ExecOptions): Promise<void>;
  kill(namespace: string, id: string, signal: number, o?: { execId?: string; all?: boolean }): Promise<void>;
  /** Resolves when the init (or exec) process exits; for a dead shim with the reported exit. */
  wait(namespace: string, id: string, execId?: string, o?: { signal?: AbortSignal }): Promise<ExitResult>;
  state(namespace: string, id: string, execId?: string): Promise<TaskState>;
  pids(namespace: string, id: string): Promise<ProcessInfo[]>;
  pause(namespace: string, id: string): Promise<void>;
  resume(namespace: string, id: string): Promise<void>;
  /** Updates resources (an OCI LinuxResources object) and annotations of a running task. */
  update(namespace: string, id: string, resources: object, annotations?: Record<string, string>): Promise<void>;
  stats(namespace: string, id: string): Promise<TaskStats>;
  resizePty(namespace: string, id: string, execId: string, width: number, height: number): Promise<void>;
  /** Closes the stdin of the init process (execId "") or an exec process. */
  closeIO(namespace: string, id: string, execId?: string): Promise<void>;
  /** The shim's pid, the task's pid and the shim's version. */
  connect(namespace: string, id: string): Promise<ShimInfo>;
  /** Deletes a stopped exec process. */
  deleteProcess(namespace: string, id: string, execId: string): Promise<ExitResult>;
  /** Deletes a stopped task and forgets it (record included). */
  delete(namespace: string, id: string): Promise<ExitResult>;
}
