// What the parts of the shim manager share: its options, the table of known tasks (one entry
// per task: its durable record, its shim connection, its tombstone once the shim is gone), the
// event hub, and the small helpers every part needs (call options, the shim's `delete`
// command, the handler a record was created with, the exit the manager reports itself).
import { access } from "node:fs/promises";

import { Status } from "../gen/containerd/types/task/task.js";
import { NAMESPACE_METADATA_KEY } from "../ttrpc/index.js";
import { NotFoundError, UnavailableError } from "../util/errors.js";
import type { Logger } from "../util/log.js";
import type { ShimConnection } from "./connections.js";
import { type EventHub, timestampToDate } from "./events.js";
import { ReportedInitExits } from "./init-exits.js";
import { HeldStartExits } from "./start-exits.js";
import type { ShimRecord, ShimRecordStore } from "./records.js";
import {
  BERTH_RUNTIME_TYPE,
  type RuntimeClasses,
  type RuntimeHandler,
  type ShimLookupOptions,
} from "./runtime-classes.js";
import { type ShimCommandOptions, shimDelete } from "./shim-command.js";
import type { ShimLogReader } from "./shim-log.js";
import type { ExitResult, TaskStatus } from "./task-runtime.js";
import type { Tombstone } from "./tombstones.js";

export interface ShimManagerOptions {
  /** Manager state; the events socket (TTRPC_ADDRESS) is `<stateDir>/events.sock`, 0600. Keep it stable across restarts. */
  stateDir: string;
  /** The daemon's address, sent as the shims' -address (shims group by it). Keep it stable across restarts. */
  address: string;
  handlers: RuntimeClasses;
  records: ShimRecordStore;
  /** Sent as -publish-binary (default: this node executable). */
  publishBinary?: string;
  /** Extra environment for shim commands. */
  shimEnv?: NodeJS.ProcessEnv;
  shimLookup?: ShimLookupOptions;
  /** Pass -debug to shims. */
  debugShims?: boolean;
  logger?: Logger;
  /** Deadline of every task call except Wait (default 60 s). */
  callTimeoutMs?: number;
  /** Deadline of the shim's start and delete commands (default 30 s). */
  commandTimeoutMs?: number;
  /** Pause before the one reconnect attempt after a shim connection drops (default 200 ms). */
  reconnectDelayMs?: number;
  /**
   * Keep berth's shim running (and connected) when its last task is deleted, so the next pod
   * does not pay for starting a Node process; idle shims are shut down by close(). Default false.
   */
  keepIdleShims?: boolean;
}

export interface TaskEntry {
  record: ShimRecord;
  conn: ShimConnection | undefined;
  dead: Tombstone | undefined;
  log: ShimLogReader | undefined;
  /** The init exit reported to subscribers (from the shim, or by the manager); the last word if the shim then dies. */
  lastExit: ExitResult | undefined;
  /** The init process was started (a task deleted unstarted exits without a TaskExit). */
  started: boolean;
  /**
   * The shim confirmed the start at Create (task-create.ts START_CONFIRMED_METADATA_KEY): the
   * pid the caller's start() returns once, without a Start call.
   */
  startConfirmedPid?: number;
}

export const statusNames: Record<number, TaskStatus> = {
  [Status.UNKNOWN]: "unknown",
  [Status.CREATED]: "created",
  [Status.RUNNING]: "running",
  [Status.STOPPED]: "stopped",
  [Status.PAUSED]: "paused",
  [Status.PAUSING]: "pausing",
};

export function taskKey(namespace: string, id: string): string {
  return `${namespace}/${id}`;
}

export function isUnavailable(err: unknown): boolean {
  return err instanceof UnavailableError;
}

export class TaskTable {
  readonly tasks = new Map<string, TaskEntry>();
  readonly callTimeoutMs: number;
  /** Init exits reported to subscribers, so each is reported once (init-exits.ts). */
  readonly reportedExits = new ReportedInitExits();
  /** Task deletes reported to subscribers, so each is reported once (init-exits.ts). */
  readonly reportedDeletes = new ReportedInitExits();
  /** Init exits held for tasks whose start the shim confirmed at Create, until start() collects it. */
  readonly startExits = new HeldStartExits();
  closed = false;

  constructor(
    readonly opts: ShimManagerOptions,
    readonly log: Logger,
    readonly hub: EventHub,
    /** Where shims publish events (TTRPC_ADDRESS). */
    readonly eventsAddress: string,
  ) {
    this.callTimeoutMs = opts.callTimeoutMs ?? 60_000;
  }

  entry(namespace: string, id: string): TaskEntry {
    const e = this.tasks.get(taskKey(namespace, id));
    if (!e) throw new NotFoundError(`task ${id} not found in namespace ${namespace}`);
    return e;
  }

  assertOpen(): void {
    if (this.closed) throw new UnavailableError("shim manager is closed");
  }

  md(namespace: string): Record<string, string> {
    return { [NAMESPACE_METADATA_KEY]: namespace };
  }

  callOpts(namespace: string, timeoutMs = this.callTimeoutMs): { metadata: Record<string, string>; timeoutMs: number } {
    return { metadata: this.md(namespace), timeoutMs };
  }

  commandOptions(r: ShimRecord): ShimCommandOptions {
    return {
      binary: r.shimBinary,
      namespace: r.namespace,
      address: this.opts.address,
      ttrpcAddress: this.eventsAddress,
      publishBinary: this.opts.publishBinary ?? process.execPath,
      id: r.id,
      bundle: r.bundle,
      debug: this.opts.debugShims,
      env: this.opts.shimEnv,
      timeoutMs: this.opts.commandTimeoutMs,
      // berth's own shim takes either form of `start`; no need to ask it which.
      ...(r.runtimeType === BERTH_RUNTIME_TYPE ? { bootstrap: false } : {}),
    };
  }

  async runDeleteCommand(r: ShimRecord): Promise<{ pid: number; exitStatus: number; exitedAt: Date }> {
    try {
      await access(r.bundle);
    } catch {
      throw new NotFoundError(`bundle ${r.bundle} is gone; the shim delete command needs it as its working directory`);
    }
    const resp = await shimDelete(this.commandOptions(r));
    return { pid: resp.pid, exitStatus: resp.exitStatus, exitedAt: timestampToDate(resp.exitedAt) };
  }

  /** The handler the record was created with, if it is still configured with the same runtime type. */
  handlerOf(r: ShimRecord): RuntimeHandler | undefined {
    try {
      const h = this.opts.handlers.get(r.handler);
      return h.runtimeType === r.runtimeType ? h : undefined;
    } catch {
      return undefined;
    }
  }

  isRestartable(r: ShimRecord): boolean {
    const h = this.handlerOf(r);
    return h ? h.restartableShim : false;
  }

  /** Reports the init exit of a task whose shim has not (yet) published it. */
  reportInitExit(e: TaskEntry, exit: ExitResult): void {
    e.lastExit = { pid: exit.pid, exitStatus: exit.exitStatus, exitedAt: exit.exitedAt };
    const reason = exit.reason ? { reason: exit.reason } : {};
    this.emitInitExit(e.record.namespace, e.record.id, { ...e.lastExit, ...reason });
  }

  /** A task's delete, from Delete's answer, unless the shim's TaskDelete was reported already. */
  reportDelete(namespace: string, id: string, result: ExitResult): void {
    if (!this.reportedDeletes.add(namespace, id, result.pid)) return;
    this.hub.emit({
      type: "delete",
      namespace,
      topic: "/tasks/delete",
      timestamp: new Date(),
      containerId: id,
      execId: "",
      pid: result.pid,
      exitStatus: result.exitStatus,
      exitedAt: result.exitedAt,
    });
  }

  /** An exit of a task's init process that the manager itself learned of (no TaskExit came). */
  emitInitExit(
    namespace: string,
    id: string,
    exit: { pid: number; exitStatus: number; exitedAt: Date; reason?: string },
  ): void {
    this.reportedExits.add(namespace, id, exit.pid);
    this.hub.emit({
      type: "exit",
      namespace,
      topic: "/tasks/exit",
      timestamp: new Date(),
      containerId: id,
      execId: "",
      ...exit,
    });
  }
}
