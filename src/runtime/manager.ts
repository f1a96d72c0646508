// The shim manager: berthd's client side of shim v2. It starts shims for bundles (the shim
// binary's `start` command), talks to them over ttrpc (containerd.task.v2.Task, or v3 for
// the shims of containerd 2.x that announce it, shim-bootstrap.ts), receives
// their events, records where each task's shim is so a restarted berthd finds them again,
// and notices dead shims, reporting their tasks exited with a reason instead of hanging.
//
// Live facts (running or not, pid, exit code) are always asked of the shim (DESIGN.md
// principle 2). The only exception is a task whose shim is gone: nothing alive knows about
// it any more, so the manager keeps a tombstone (exit 255 and the reason) until it is deleted.
// Every end of an init process reaches subscribers as one exit event, whoever learns of it:
// the shim's TaskExit, the manager for a dead shim, the manager finding a task stopped
// when it (re)attaches to a shim, or the manager at delete when the TaskExit is late; always
// before the task's delete event (init-exits.ts). The CRI layer keeps its container and pod
// state from them.
//
// This file is the front; the parts share one TaskTable (task-table.ts):
//   connections.ts  ttrpc connections per shim socket, warm berth shims, shutdown
//   task-create.ts  createTask and its undo
//   task-client.ts  the task calls (start, exec, kill, wait, state, ..., delete)
//   recovery.ts     reattaching at start and after a dropped connection
//   tombstones.ts   what is reported for a task whose shim is gone
import { join, resolve } from "node:path";

import type { ProcessInfo } from "../gen/containerd/types/task/task.js";
import { InvalidArgumentError } from "../util/errors.js";
import { silentLogger } from "../util/log.js";
import { ShimConnections } from "./connections.js";
import { EventHub, type EventListener, EventsServer, type RuntimeEvent, decodeEnvelope } from "./events.js";
import type { ShimRecord } from "./records.js";
import { ShimRecovery } from "./recovery.js";
import { TaskClient } from "./task-client.js";
import { TaskCreator } from "./task-create.js";
import type {
  CreateTaskOptions,
  CreatedTask,
  ExecOptions,
  ExitResult,
  RecoveredTask,
  ShimInfo,
  TaskRuntime,
  TaskState,
  TaskStats,
} from "./task-runtime.js";
import { type ShimManagerOptions, TaskTable, taskKey } from "./task-table.js";

export { OCI_LINUX_RESOURCES_TYPE_URL, OCI_PROCESS_TYPE_URL } from "./task-client.js";
export type { ShimManagerOptions } from "./task-table.js";

/** The annotation containerd-shim-runc-v2 groups a pod's containers into one shim by. */
export const SANDBOX_ID_ANNOTATION = "io.kubernetes.cri.sandbox-id";

export const EVENTS_SOCKET_NAME = "events.sock";

export class ShimManager implements TaskRuntime {
  private readonly table: TaskTable;
  private readonly hub: EventHub;
  private readonly events: EventsServer;
  private readonly conns: ShimConnections;
  private readonly client: TaskClient;
  private readonly creator: TaskCreator;
  private readonly recovery: ShimRecovery;
  readonly eventsAddress: string;

  private constructor(opts: ShimManagerOptions) {
    const log = opts.logger ?? silentLogger();
    this.hub = new EventHub(log);
    this.eventsAddress = join(resolve(opts.stateDir), EVENTS_SOCKET_NAME);
    this.table = new TaskTable(opts, log, this.hub, this.eventsAddress);
    this.conns = new ShimConnections(this.table, (conn, reason) => this.recovery.onConnectionClosed(conn, reason));
    this.client = new TaskClient(this.table, this.conns);
    this.creator = new TaskCreator(this.table, this.conns);
    this.recovery = new ShimRecovery(this.table, this.conns);
    this.events = new EventsServer((env) => this.onShimEvent(decodeEnvelope(env)), log);
    this.table.startExits.deliver = (ev) => this.onShimEvent(ev);
  }

  /** Builds a manager and starts its events server. Call recover() next to reattach to existing shims. */
  static async create(opts: ShimManagerOptions): Promise<ShimManager> {
    if (!opts.address) throw new InvalidArgumentError("shim manager: address must not be empty");
    const m = new ShimManager(opts);
    await m.events.listen(m.eventsAddress);
    return m;
  }

  /** Subscribes to task events (from shims, and exits the manager reports for dead shims). Returns the unsubscribe function. */
  onEvent(fn: EventListener): () => void {
    return this.hub.subscribe(fn);
  }

  /** Shims berthd holds a live ttrpc connection to (the berth_shims metric). */
  get shimCount(): number {
    return this.conns.count;
  }

  /** Tasks the manager knows, as their records. */
  list(): ShimRecord[] {
    return [...this.table.tasks.values()].map((e) => ({ ...e.record }));
  }

  /** Whether the manager knows the task (created and not yet deleted; its shim may be dead). O(1), for hot paths. */
  has(namespace: string, id: string): boolean {
    return this.table.tasks.has(taskKey(namespace, id));
  }

  /** The task's record, or undefined. */
  record(namespace: string, id: string): ShimRecord | undefined {
    const e = this.table.tasks.get(taskKey(namespace, id));
    return e ? { ...e.record } : undefined;
  }

  /** Reattaches to the shims of every recorded task (berthd start); see recovery.ts. */
  recover(): Promise<RecoveredTask[]> {
    return this.recovery.recover();
  }

  // ---- tasks (task-create.ts, task-client.ts) ----------------------------------------------

  createTask(req: CreateTaskOptions): Promise<CreatedTask> {
    return this.creator.create(req);
  }
  start(namespace: string, id: string, execId = ""): Promise<number> {
    return this.client.start(namespace, id, execId);
  }
  exec(namespace: string, id: string, execId: string, o: ExecOptions): Promise<void> {
    return this.client.exec(namespace, id, execId, o);
  }
  kill(namespace: string, id: string, signal: number, o: { execId?: string; all?: boolean } = {}): Promise<void> {
    return this.client.kill(namespace, id, signal, o);
  }
  wait(namespace: string, id: string, execId = "", o: { signal?: AbortSignal } = {}): Promise<ExitResult> {
    return this.client.wait(namespace, id, execId, o);
  }
  state(namespace: string, id: string, execId = ""): Promise<TaskState> {
    return this.client.state(namespace, id, execId);
  }
  pids(namespace: string, id: string): Promise<ProcessInfo[]> {
    return this.client.pids(namespace, id);
  }
  pause(namespace: string, id: string): Promise<void> {
    return this.client.pause(namespace, id);
  }
  resume(namespace: string, id: string): Promise<void> {
    return this.client.resume(namespace, id);
  }
  update(namespace: string, id: string, resources: object, annotations: Record<string, string> = {}): Promise<void> {
    return this.client.update(namespace, id, resources, annotations);
  }
  stats(namespace: string, id: string): Promise<TaskStats> {
    return this.client.stats(namespace, id);
  }
  resizePty(namespace: string, id: string, execId: string, width: number, height: number): Promise<void> {
    return this.client.resizePty(namespace, id, execId, width, height);
  }
  closeIO(namespace: string, id: string, execId = ""): Promise<void> {
    return this.client.closeIO(namespace, id, execId);
  }
  connect(namespace: string, id: string): Promise<ShimInfo> {
    return this.client.connect(namespace, id);
  }
  deleteProcess(namespace: string, id: string, execId: string): Promise<ExitResult> {
    return this.client.deleteProcess(namespace, id, execId);
  }
  delete(namespace: string, id: string): Promise<ExitResult> {
    return this.client.delete(namespace, id);
  }

  // ---- plumbing ---------------------------------------------------------------------------

  private onShimEvent(ev: RuntimeEvent): void {
    // An exit of a task whose start its Create confirmed, before the caller collected it (start-exits.ts).
    if (ev.type === "exit" && this.table.startExits.offer(taskKey(ev.namespace, ev.containerId), ev)) return;
    if (ev.type === "exit" && ev.execId === "") {
      // Already reported by the manager, ahead of the task's delete: a late TaskExit.
      if (!this.table.reportedExits.add(ev.namespace, ev.containerId, ev.pid)) return;
      const e = this.table.tasks.get(taskKey(ev.namespace, ev.containerId));
      if (e) e.lastExit = { pid: ev.pid, exitStatus: ev.exitStatus, exitedAt: ev.exitedAt };
    } else if (ev.type === "delete" && ev.execId === "") {
      // Reported already from the delete's answer (task-client.ts): the shim's came late.
      if (!this.table.reportedDeletes.add(ev.namespace, ev.containerId, ev.pid)) return;
      // A TaskDelete ahead of the shim's TaskExit: subscribers hear of the exit first.
      const e = this.table.tasks.get(taskKey(ev.namespace, ev.containerId));
      if (e && e.started && !e.lastExit && !e.dead) this.table.reportInitExit(e, ev);
    }
    this.hub.emit(ev);
  }

  /**
   * Stops the events server and drops every shim connection. Shims and their containers keep
   * running (that is the point of shims); a new manager's recover() picks them up.
   */
  async close(): Promise<void> {
    if (this.table.closed) return;
    this.table.closed = true;
    // Idle shims have nothing to keep running for; shims with tasks outlive berthd.
    await this.conns.close();
    for (const e of this.table.tasks.values()) e.log?.close();
    this.conns.closeAll();
    await this.events.close();
  }
}
