// The shim manager: berthd's client side of shim v2. It starts shims for bundles (the shim
// binary's `start` command), talks to them over ttrpc (containerd.task.v2.Task), receives
// their events, records where each task's shim is so a restarted berthd finds them again,
// and notices dead shims, reporting their tasks exited with a reason instead of hanging.
//
// Live facts (running or not, pid, exit code) are always asked of the shim (DESIGN.md
// principle 2). The only exception is a task whose shim is gone: nothing alive knows about
// it any more, so the manager keeps a tombstone (exit 255 and the reason) until it is deleted.
// Every end of an init process reaches subscribers as one exit event, whoever learns of it:
// the shim's TaskExit, the manager for a dead shim, or the manager finding a task stopped
// when it (re)attaches to a shim. The CRI layer keeps its container and pod state from them.
import { access, constants, lstat, unlink, writeFile } from "node:fs/promises";
import { basename, isAbsolute, join, resolve } from "node:path";

import { Metrics as V1Metrics } from "../gen/cgroups/stats/v1/metrics.js";
import { Metrics as V2Metrics } from "../gen/cgroups/stats/v2/metrics.js";
import { TaskDefinition } from "../gen/containerd/runtime/v2/task/shim.js";
import { type ProcessInfo, Status } from "../gen/containerd/types/task/task.js";
import type { Any } from "../gen/google/protobuf/any.js";
import { NAMESPACE_METADATA_KEY, type ServiceClient, TtrpcClient, createClient, socketPath } from "../ttrpc/index.js";
import { AlreadyExistsError, InvalidArgumentError, NotFoundError, UnavailableError } from "../util/errors.js";
import { type Logger, silentLogger } from "../util/log.js";
import {
  EventHub,
  type EventListener,
  EventsServer,
  type RuntimeEvent,
  decodeEnvelope,
  timestampToDate,
} from "./events.js";
import {
  BERTH_RUNTIME_TYPE,
  type RuntimeHandler,
  type RuntimeClasses,
  type ShimLookupOptions,
  resolveShimBinary,
  runcOptionsAny,
} from "./runtime-classes.js";
import { type ShimRecord, type ShimRecordStore, validateIdentifier } from "./records.js";
import { type ShimCommandOptions, shimDelete, shimStart } from "./shim-command.js";
import { ShimLogReader } from "./shim-log.js";
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
  TaskStatus,
} from "./task-runtime.js";
import { sleep } from "../util/sleep.js";

/** Type URLs containerd's typeurl gives OCI spec types (JSON-encoded in the Any). */
export const OCI_PROCESS_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Process";
export const OCI_LINUX_RESOURCES_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources";

/** The annotation containerd-shim-runc-v2 groups a pod's containers into one shim by. */
export const SANDBOX_ID_ANNOTATION = "io.kubernetes.cri.sandbox-id";

export const EVENTS_SOCKET_NAME = "events.sock";

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

type TaskClient = ServiceClient<typeof TaskDefinition>;

/** One ttrpc connection to a serving shim, shared by all its tasks. */
class ShimConnection {
  readonly tasks = new Set<string>();
  /** Set while Shutdown is on its way: the close that follows is expected. */
  closingOnPurpose: Promise<void> | undefined;
  /** Set while a dropped connection is being diagnosed (reconnect, restart, or dead). */
  recovering: Promise<void> | undefined;
  readonly task: TaskClient;

  constructor(
    /** The address as the shim printed it (what records hold). */
    readonly address: string,
    readonly client: TtrpcClient,
  ) {
    this.task = createClient(TaskDefinition, client);
  }

  /** The key connections are shared by: the socket path, so `unix:///x` and `/x` are one shim. */
  get key(): string {
    return addressKey(this.address);
  }
}

/** The tasks one berth shim serves: one namespace, one shim binary. */
function groupKey(r: ShimRecord): string {
  return `${r.namespace}\0${r.shimBinary}`;
}

function addressKey(address: string): string {
  return socketPath(address);
}

interface Tombstone extends ExitResult {
  reason: string;
  /** The shim `delete` command run to clean up after the dead shim. */
  cleanup: Promise<void>;
}

interface TaskEntry {
  record: ShimRecord;
  conn: ShimConnection | undefined;
  dead: Tombstone | undefined;
  log: ShimLogReader | undefined;
  /** The init exit seen in events, used only if the shim then dies (it was the last word). */
  lastExit: ExitResult | undefined;
}

const statusNames: Record<number, TaskStatus> = {
  [Status.UNKNOWN]: "unknown",
  [Status.CREATED]: "created",
  [Status.RUNNING]: "running",
  [Status.STOPPED]: "stopped",
  [Status.PAUSED]: "paused",
  [Status.PAUSING]: "pausing",
};

function key(namespace: string, id: string): string {
  return `${namespace}/${id}`;
}

/** How many times recovery connects (or restarts) again after a shim dropped the connection mid-adoption. */
const RECONNECT_ROUNDS = 3;

function isUnavailable(err: unknown): boolean {
  return err instanceof UnavailableError;
}

export class ShimManager implements TaskRuntime {
  private readonly log: Logger;
  private readonly hub: EventHub;
  private readonly events: EventsServer;
  private readonly tasks = new Map<string, TaskEntry>();
  /**
   * berth's shim serves every task of a namespace started through the same shim binary: its
   * live connection per such group, and the `start` command in flight per group (so pods
   * created at once start one shim, not one Node process each).
   */
  private readonly berthGroups = new Map<string, { conn: ShimConnection; record: ShimRecord }>();
  private readonly berthStarting = new Map<string, Promise<string>>();
  private readonly conns = new Map<string, ShimConnection>();
  private readonly connecting = new Map<string, Promise<ShimConnection>>();
  private readonly creating = new Set<string>();
  private readonly callTimeoutMs: number;
  private closed = false;
  readonly eventsAddress: string;

  private constructor(private readonly opts: ShimManagerOptions) {
    this.log = opts.logger ?? silentLogger();
    this.hub = new EventHub(this.log);
    this.callTimeoutMs = opts.callTimeoutMs ?? 60_000;
    this.eventsAddress = join(resolve(opts.stateDir), EVENTS_SOCKET_NAME);
    this.events = new EventsServer((env) => this.onShimEvent(decodeEnvelope(env)), this.log);
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
    return this.conns.size;
  }

  /** Tasks the manager knows, as their records. */
  list(): ShimRecord[] {
    return [...this.tasks.values()].map((e) => ({ ...e.record }));
  }

  /** Whether the manager knows the task (created and not yet deleted; its shim may be dead). O(1), for hot paths. */
  has(namespace: string, id: string): boolean {
    return this.tasks.has(key(namespace, id));
  }

  /** The task's record, or undefined. */
  record(namespace: string, id: string): ShimRecord | undefined {
    const e = this.tasks.get(key(namespace, id));
    return e ? { ...e.record } : undefined;
  }

  // ---- lifecycle --------------------------------------------------------------------------

  /** Starts (or joins) a shim for the bundle and creates the task in it. Everything it made is undone on failure. */
  async createTask(req: CreateTaskOptions): Promise<CreatedTask> {
    this.assertOpen();
    validateIdentifier("namespace", req.namespace);
    validateIdentifier("task id", req.id);
    const handler = this.opts.handlers.get(req.handler);
    const bundle = await this.checkBundle(req.bundle, req.id);
    const k = key(req.namespace, req.id);
    if (this.tasks.has(k) || this.creating.has(k) || (await this.opts.records.get(req.namespace, req.id))) {
      throw new AlreadyExistsError(`task ${req.id} already exists in namespace ${req.namespace}`);
    }
    const shimBinary = resolveShimBinary(handler.runtimeType, this.opts.shimLookup);
    this.creating.add(k);
    try {
      return await this.createTaskIn(req, handler, bundle, shimBinary);
    } finally {
      this.creating.delete(k);
    }
  }

  private async createTaskIn(
    req: CreateTaskOptions,
    handler: RuntimeHandler,
    bundle: string,
    shimBinary: string,
  ): Promise<CreatedTask> {
    const k = key(req.namespace, req.id);
    const log = this.log.child({ namespace: req.namespace, task: req.id });
    const options = runcOptionsAny(handler);
    const record: ShimRecord = {
      namespace: req.namespace,
      id: req.id,
      address: "",
      handler: handler.name,
      runtimeType: handler.runtimeType,
      shimBinary,
      bundle,
      ...(req.sandboxId ? { sandboxId: req.sandboxId } : {}),
      createdAt: new Date().toISOString(),
    };
    const shimLog = ShimLogReader.open(bundle, log);
    let conn: ShimConnection | undefined;
    let recorded = false;
    try {
      // A shim that is shutting down may still hand out its address; then start again.
      for (let attempt = 0; ; attempt++) {
        const warm = attempt === 0 ? this.warmShim(record) : undefined;
        if (warm) {
          // berth's shim serves every task of one namespace; its `start` command would only
          // print this same address after spawning a whole Node process to find it out.
          record.address = warm.address;
          warm.tasks.add(k); // claimed before any await, so an idle-shutdown cannot race us
          await writeFile(join(bundle, "address"), warm.address, { mode: 0o600 });
          conn = warm;
          break;
        }
        record.address = await this.startShim(record, options);
        conn = await this.connection(record.address);
        if (conn) {
          if (record.runtimeType === BERTH_RUNTIME_TYPE) this.berthGroups.set(groupKey(record), { conn, record });
          break;
        }
        if (attempt >= 2)
          throw new UnavailableError(`shim at ${record.address} kept shutting down while task ${req.id} was created`);
      }
      conn.tasks.add(k);
      // Recorded before Create: a crash after Create must leave a record that recover() finds.
      await this.opts.records.put(record);
      recorded = true;
      const io = normalizeIO(req);
      const resp = await conn.task.create(
        {
          id: req.id,
          bundle,
          rootfs: req.rootfs ?? [],
          terminal: io.terminal,
          stdin: io.stdin,
          stdout: io.stdout,
          stderr: io.stderr,
          checkpoint: "",
          parentCheckpoint: "",
          options,
        },
        this.callOpts(req.namespace),
      );
      this.tasks.set(k, { record, conn, dead: undefined, log: shimLog, lastExit: undefined });
      log.info({ address: record.address, pid: resp.pid, handler: handler.name }, "task created");
      return { pid: resp.pid, address: record.address };
    } catch (err) {
      log.warn({ err }, "task create failed; cleaning up");
      await this.undoCreate(record, conn, recorded).catch((e: unknown) =>
        log.warn({ err: e }, "cleanup after failed create"),
      );
      shimLog.close();
      throw err;
    }
  }

  /**
   * A live connection to berth's shim already serving tasks of the record's namespace through
   * the same shim binary, if any. Only for berth's shim, whose grouping (one serving process
   * per namespace and address) is known; other shims group their own way and get `start`.
   */
  private warmShim(record: ShimRecord): ShimConnection | undefined {
    if (record.runtimeType !== BERTH_RUNTIME_TYPE) return undefined;
    const g = groupKey(record);
    const found = this.berthGroups.get(g);
    if (!found) return undefined;
    const c = found.conn;
    if (c.client.closed || c.closingOnPurpose || c.recovering || this.conns.get(c.key) !== c) {
      this.berthGroups.delete(g);
      return undefined;
    }
    return c;
  }

  /** Runs the shim's `start` command; for berth's shim, once per group at a time. */
  private async startShim(record: ShimRecord, options: Any | undefined): Promise<string> {
    if (record.runtimeType !== BERTH_RUNTIME_TYPE) return shimStart(this.commandOptions(record), options);
    const g = groupKey(record);
    let pending = this.berthStarting.get(g);
    if (!pending) {
      pending = shimStart(this.commandOptions(record), options);
      this.berthStarting.set(g, pending);
      void pending.finally(() => this.berthStarting.delete(g)).catch(() => {});
      return pending;
    }
    // Another task of the group is starting the shim; its address is ours too, but the
    // bundle's `address` file is per task.
    const address = await pending;
    await writeFile(join(record.bundle, "address"), address, { mode: 0o600 });
    return address;
  }

  /** What containerd does when Create fails: delete the task in the shim, shut the shim down if idle, run `delete`. */
  private async undoCreate(record: ShimRecord, conn: ShimConnection | undefined, recorded: boolean): Promise<void> {
    const k = key(record.namespace, record.id);
    if (conn) {
      conn.tasks.delete(k);
      if (!conn.client.closed) {
        await conn.task.delete({ id: record.id, execId: "" }, this.callOpts(record.namespace, 10_000)).catch(() => {});
        if (conn.tasks.size === 0) await this.shutdownConnection(conn, record);
      }
    }
    await this.runDeleteCommand(record).catch((err: unknown) =>
      this.log.debug({ err, task: record.id }, "shim delete after failed create (nothing to clean is normal)"),
    );
    if (recorded) await this.opts.records.delete(record.namespace, record.id);
  }

  private async checkBundle(bundle: string, id: string): Promise<string> {
    if (!bundle || !isAbsolute(bundle))
      throw new InvalidArgumentError(`bundle path ${JSON.stringify(bundle)} must be absolute`);
    const dir = resolve(bundle);
    if (basename(dir) !== id) {
      // containerd-shim-runc-v2's delete finds the bundle as <dirname(cwd)>/<id>.
      throw new InvalidArgumentError(`bundle directory ${dir} must be named after the task id ${JSON.stringify(id)}`);
    }
    try {
      await access(dir, constants.X_OK);
    } catch {
      throw new InvalidArgumentError(`bundle directory ${dir} does not exist`);
    }
    try {
      await access(join(dir, "config.json"), constants.R_OK);
    } catch {
      throw new InvalidArgumentError(`bundle ${dir} has no config.json`);
    }
    return dir;
  }

  /** Starts a created task (execId "") or exec process; resolves with its pid. */
  async start(namespace: string, id: string, execId = ""): Promise<number> {
    return this.withTask(
      namespace,
      id,
      async (c) => (await c.start({ id, execId }, this.callOpts(namespace))).pid,
      deadNotRunning,
    );
  }

  /** Adds an exec process to a running task (start it with start(namespace, id, execId)). */
  async exec(namespace: string, id: string, execId: string, o: ExecOptions): Promise<void> {
    validateIdentifier("exec id", execId);
    const spec: Any = { typeUrl: OCI_PROCESS_TYPE_URL, value: Buffer.from(JSON.stringify(o.spec)) };
    const io = normalizeIO(o);
    await this.withTask(
      namespace,
      id,
      (c) => c.exec({ id, execId, ...io, spec }, this.callOpts(namespace)),
      deadNotRunning,
    );
  }

  /** Signals the init process (or an exec process), or with `all` every process of the task. */
  async kill(namespace: string, id: string, signal: number, o: { execId?: string; all?: boolean } = {}): Promise<void> {
    await this.withTask(
      namespace,
      id,
      (c) => c.kill({ id, execId: o.execId ?? "", signal, all: o.all ?? false }, this.callOpts(namespace)),
      deadNotRunning,
    );
  }

  /**
   * Waits for the init process (or an exec process) to exit. Asks the shim every time; if the
   * shim dies meanwhile, resolves with the exit the manager reports for it (255 and a reason).
   */
  async wait(namespace: string, id: string, execId = "", o: { signal?: AbortSignal } = {}): Promise<ExitResult> {
    return this.withTask(
      namespace,
      id,
      async (c) => {
        const r = await c.wait({ id, execId }, { metadata: this.md(namespace), signal: o.signal });
        return { pid: 0, exitStatus: r.exitStatus, exitedAt: timestampToDate(r.exitedAt) };
      },
      (t) => ({ pid: t.pid, exitStatus: t.exitStatus, exitedAt: t.exitedAt, reason: t.reason }),
    );
  }

  /** The state of the task (execId "") or an exec process, from the shim. */
  async state(namespace: string, id: string, execId = ""): Promise<TaskState> {
    const bundle = this.entry(namespace, id).record.bundle;
    return this.withTask(
      namespace,
      id,
      async (c) => {
        const s = await c.state({ id, execId }, this.callOpts(namespace));
        return {
          id: s.id,
          execId: s.execId,
          bundle: s.bundle,
          pid: s.pid,
          status: statusNames[s.status] ?? "unknown",
          stdin: s.stdin,
          stdout: s.stdout,
          stderr: s.stderr,
          terminal: s.terminal,
          exitStatus: s.exitStatus,
          exitedAt: s.exitedAt ? timestampToDate(s.exitedAt) : undefined,
        };
      },
      (t) => {
        if (execId) throw new NotFoundError(`exec ${execId} of task ${id}: ${t.reason}`);
        return {
          id,
          execId: "",
          bundle,
          pid: t.pid,
          status: "stopped",
          stdin: "",
          stdout: "",
          stderr: "",
          terminal: false,
          exitStatus: t.exitStatus,
          exitedAt: t.exitedAt,
          reason: t.reason,
        };
      },
    );
  }

  async pids(namespace: string, id: string): Promise<ProcessInfo[]> {
    return this.withTask(
      namespace,
      id,
      async (c) => (await c.pids({ id }, this.callOpts(namespace))).processes,
      deadNotRunning,
    );
  }

  async pause(namespace: string, id: string): Promise<void> {
    await this.withTask(namespace, id, (c) => c.pause({ id }, this.callOpts(namespace)), deadNotRunning);
  }

  async resume(namespace: string, id: string): Promise<void> {
    await this.withTask(namespace, id, (c) => c.resume({ id }, this.callOpts(namespace)), deadNotRunning);
  }

  /** Updates resources (an OCI LinuxResources object) and annotations of a running task. */
  async update(
    namespace: string,
    id: string,
    resources: object,
    annotations: Record<string, string> = {},
  ): Promise<void> {
    const any: Any = { typeUrl: OCI_LINUX_RESOURCES_TYPE_URL, value: Buffer.from(JSON.stringify(resources)) };
    await this.withTask(
      namespace,
      id,
      (c) => c.update({ id, resources: any, annotations }, this.callOpts(namespace)),
      deadNotRunning,
    );
  }

  /** Resource usage, decoded when it is cgroups v1 or v2 metrics. */
  async stats(namespace: string, id: string): Promise<TaskStats> {
    return this.withTask(
      namespace,
      id,
      async (c) => {
        const raw = (await c.stats({ id }, this.callOpts(namespace))).stats;
        const typeUrl = raw?.typeUrl ?? "";
        const name = typeUrl.slice(typeUrl.lastIndexOf("/") + 1);
        const out: TaskStats = { typeUrl, raw };
        if (raw && name === "io.containerd.cgroups.v1.Metrics") out.v1 = V1Metrics.decode(raw.value);
        if (raw && name === "io.containerd.cgroups.v2.Metrics") out.v2 = V2Metrics.decode(raw.value);
        return out;
      },
      deadNotRunning,
    );
  }

  async resizePty(namespace: string, id: string, execId: string, width: number, height: number): Promise<void> {
    await this.withTask(
      namespace,
      id,
      (c) => c.resizePty({ id, execId, width, height }, this.callOpts(namespace)),
      deadNotRunning,
    );
  }

  /** Closes the stdin of the init process (execId "") or an exec process. */
  async closeIO(namespace: string, id: string, execId = ""): Promise<void> {
    await this.withTask(
      namespace,
      id,
      (c) => c.closeIO({ id, execId, stdin: true }, this.callOpts(namespace)),
      deadNotRunning,
    );
  }

  /** The shim's pid, the task's pid and the shim's version (the Connect call). */
  async connect(namespace: string, id: string): Promise<ShimInfo> {
    return this.withTask(
      namespace,
      id,
      async (c) => {
        const r = await c.connect({ id }, this.callOpts(namespace));
        return {
          shimPid: r.shimPid,
          taskPid: r.taskPid,
          version: r.version,
          address: this.entry(namespace, id).record.address,
        };
      },
      deadNotRunning,
    );
  }

  /** Deletes a stopped exec process from the shim. */
  async deleteProcess(namespace: string, id: string, execId: string): Promise<ExitResult> {
    if (!execId) throw new InvalidArgumentError("deleteProcess needs an exec id; use delete() for the task itself");
    return this.withTask(
      namespace,
      id,
      async (c) => {
        const r = await c.delete({ id, execId }, this.callOpts(namespace));
        return { pid: r.pid, exitStatus: r.exitStatus, exitedAt: timestampToDate(r.exitedAt) };
      },
      deadNotRunning,
    );
  }

  /**
   * Deletes a stopped task: Delete in the shim, then, when it was the shim's last task of
   * ours, Shutdown so the shim exits. For a task whose shim died, finishes the cleanup
   * (`delete` command) and returns the reported exit. The record is removed either way.
   */
  async delete(namespace: string, id: string): Promise<ExitResult> {
    const e = this.entry(namespace, id);
    const result = await this.withTask(
      namespace,
      id,
      async (c): Promise<ExitResult> => {
        try {
          const r = await c.delete({ id, execId: "" }, this.callOpts(namespace));
          return { pid: r.pid, exitStatus: r.exitStatus, exitedAt: timestampToDate(r.exitedAt) };
        } catch (err) {
          if (!(err instanceof NotFoundError)) throw err;
          // The shim no longer knows the task: clean up what may be left, as after a dead shim.
          const r = await this.runDeleteCommand(e.record).catch(() => undefined);
          return {
            pid: r?.pid ?? 0,
            exitStatus: r?.exitStatus ?? 255,
            exitedAt: r?.exitedAt ?? new Date(),
            reason: `shim at ${e.record.address} has no task ${id}`,
          };
        }
      },
      async (t) => {
        await t.cleanup;
        return { pid: t.pid, exitStatus: t.exitStatus, exitedAt: t.exitedAt, reason: t.reason };
      },
    );
    await this.forget(e);
    return result;
  }

  /** Drops a deleted task: its connection share (shutting the shim down when idle), record and log reader. */
  private async forget(e: TaskEntry): Promise<void> {
    const k = key(e.record.namespace, e.record.id);
    this.tasks.delete(k);
    e.log?.close();
    const conn = e.conn;
    e.conn = undefined;
    if (conn) {
      conn.tasks.delete(k);
      if (conn.tasks.size === 0) {
        const g = groupKey(e.record);
        const holder = this.berthGroups.get(g);
        if (
          this.opts.keepIdleShims &&
          this.isRestartable(e.record) &&
          !conn.client.closed &&
          (!holder || holder.conn === conn || holder.conn.client.closed)
        ) {
          // Registered here too (a shim recovered after a restart was not started by us), so
          // that close() finds and stops it.
          this.berthGroups.set(g, { conn, record: e.record });
          this.log.debug({ address: conn.address }, "shim idle; kept running for the next task");
        } else {
          await this.shutdownConnection(conn, e.record);
        }
      }
    }
    await this.opts.records.delete(e.record.namespace, e.record.id);
  }

  /** Asks an idle shim to exit and closes our connection; the close that follows is expected. */
  private async shutdownConnection(conn: ShimConnection, last: ShimRecord): Promise<void> {
    if (conn.closingOnPurpose) return conn.closingOnPurpose;
    conn.closingOnPurpose = (async () => {
      try {
        await conn.task.shutdown({ id: last.id, now: false }, this.callOpts(last.namespace, 10_000));
      } catch (err) {
        // A shim that exits before answering closes the connection: that is success.
        if (!isUnavailable(err)) this.log.warn({ err, address: conn.address }, "shim shutdown failed");
      } finally {
        if (this.conns.get(conn.key) === conn) this.conns.delete(conn.key);
        conn.client.close();
      }
    })();
    return conn.closingOnPurpose;
  }

  // ---- recovery ---------------------------------------------------------------------------

  /**
   * Reattaches to the shims of every recorded task (berthd start). A shim that answers keeps
   * its tasks; berth's shim, when gone, is started again to re-adopt its containers; any
   * other task whose shim is gone is reported exited (255, with the reason) and cleaned up
   * with the shim's `delete` command. Never waits on a dead shim for more than a few seconds.
   */
  async recover(): Promise<RecoveredTask[]> {
    this.assertOpen();
    const records = (await this.opts.records.list()).filter((r) => !this.tasks.has(key(r.namespace, r.id)));
    const byAddress = new Map<string, ShimRecord[]>();
    for (const r of records) {
      const list = byAddress.get(r.address) ?? [];
      list.push(r);
      byAddress.set(r.address, list);
    }
    const results = await Promise.all(
      [...byAddress.entries()].map(([address, recs]) => this.recoverShim(address, recs)),
    );
    return results.flat();
  }

  private async recoverShim(address: string, records: ShimRecord[]): Promise<RecoveredTask[]> {
    const entries: TaskEntry[] = [];
    for (const record of records) {
      let log: ShimLogReader | undefined;
      try {
        log = ShimLogReader.open(record.bundle, this.log.child({ namespace: record.namespace, task: record.id }));
      } catch (err) {
        this.log.warn({ err, task: record.id }, "cannot open the shim log fifo of a recovered task");
      }
      const e: TaskEntry = { record, conn: undefined, dead: undefined, log, lastExit: undefined };
      this.tasks.set(key(record.namespace, record.id), e);
      entries.push(e);
    }
    const { conn, restarted, statuses } = await this.reattach(address, entries, 2000);
    const out: RecoveredTask[] = [];
    for (const e of entries) {
      const { namespace, id } = e.record;
      const status = statuses.get(e);
      if (status === undefined) {
        out.push({ namespace, id, address, outcome: "dead", status: "stopped", reason: e.dead?.reason });
      } else {
        out.push({ namespace, id, address: conn!.address, outcome: restarted ? "restarted" : "live", status });
      }
    }
    if (conn && !conn.client.closed) {
      if (conn.tasks.size === 0) await this.shutdownConnection(conn, records[0]!);
      else if (this.isRestartable(records[0]!) && !this.berthGroups.has(groupKey(records[0]!))) {
        this.berthGroups.set(groupKey(records[0]!), { conn, record: records[0]! });
      }
    }
    return out;
  }

  /**
   * Finds the shim at `address` again for `entries` (recorded tasks, or the tasks of a dropped
   * connection): connects, or for berth's shim runs `start` again, then adopts each task there.
   * A task the shim does not know, or a shim that cannot be reached or started, is reported
   * dead. A shim may accept a connection and then vanish before answering: a SIGKILLed Node
   * shim shows as a zombie while its other threads, still exiting, hold the listening socket
   * open, and an idle shim may be exiting just as we connect. A connection lost that way says
   * nothing about the tasks, so it is diagnosed again (connect / restart) a few times instead of
   * being taken as their death.
   */
  private async reattach(
    address: string,
    entries: TaskEntry[],
    connectTimeoutMs: number,
  ): Promise<{ conn: ShimConnection | undefined; restarted: boolean; statuses: Map<TaskEntry, TaskStatus> }> {
    const statuses = new Map<TaskEntry, TaskStatus>();
    const restartable = entries.find((e) => this.isRestartable(e.record));
    let pending = entries;
    let conn: ShimConnection | undefined;
    let restarted = false;
    for (let round = 0; pending.length > 0 && !this.closed; round++) {
      if (round > 0) await sleep(this.opts.reconnectDelayMs ?? 200);
      conn = await this.tryConnect(address, connectTimeoutMs);
      if (!conn && restartable && !this.closed) {
        conn = await this.restartShim(restartable.record);
        restarted = true;
      }
      if (!conn) {
        for (const e of pending) this.markDead(e, `shim exited: ${address} unreachable`);
        await this.removeStaleSocket(address);
        break;
      }
      const lost: TaskEntry[] = [];
      for (const e of pending) {
        const status = await this.adopt(e, conn, round < RECONNECT_ROUNDS - 1);
        if (status === "lost") lost.push(e);
        else if (status !== undefined) statuses.set(e, status);
      }
      if (lost.length > 0) {
        this.log.warn({ address, tasks: lost.length }, "shim connection lost while adopting its tasks; trying again");
        conn = undefined;
      }
      pending = lost;
    }
    return { conn, restarted, statuses };
  }

  /**
   * Puts a task on a (new) connection after asking the shim for its State; marks it dead if
   * the shim does not know it. With `lostIsRetryable`, a connection that closed before the
   * answer returns "lost" and leaves the task for the caller to place elsewhere.
   */
  private async adopt(
    e: TaskEntry,
    conn: ShimConnection,
    lostIsRetryable = false,
  ): Promise<TaskStatus | "lost" | undefined> {
    const { namespace, id } = e.record;
    try {
      const s = await conn.task.state({ id, execId: "" }, this.callOpts(namespace, 15_000));
      e.conn = conn;
      conn.tasks.add(key(namespace, id));
      if (e.record.address !== conn.address) {
        e.record = { ...e.record, address: conn.address };
        await this.opts.records.put(e.record);
      }
      const status = statusNames[s.status] ?? "unknown";
      if (status === "stopped" && !e.lastExit) {
        // It exited while we were not connected (a restarted shim, or berthd down): its
        // TaskExit may never reach us, and subscribers keep task state from exit events.
        const exit = {
          pid: s.pid,
          exitStatus: s.exitStatus,
          exitedAt: s.exitedAt ? timestampToDate(s.exitedAt) : new Date(),
        };
        e.lastExit = exit;
        this.emitInitExit(namespace, id, exit);
      }
      return status;
    } catch (err) {
      if (lostIsRetryable && isUnavailable(err) && conn.client.closed) return "lost";
      const why =
        err instanceof NotFoundError
          ? `shim at ${conn.address} has no task ${id}`
          : `shim at ${conn.address} did not answer: ${(err as Error).message}`;
      this.markDead(e, why);
      return undefined;
    }
  }

  private isRestartable(r: ShimRecord): boolean {
    const h = this.handlerOf(r);
    return h ? h.restartableShim : false;
  }

  private handlerOf(r: ShimRecord): RuntimeHandler | undefined {
    try {
      const h = this.opts.handlers.get(r.handler);
      return h.runtimeType === r.runtimeType ? h : undefined;
    } catch {
      return undefined;
    }
  }

  /** Runs berth's shim `start` again with the task's original arguments; the new shim re-adopts its monitors. */
  private async restartShim(r: ShimRecord): Promise<ShimConnection | undefined> {
    const h = this.handlerOf(r);
    try {
      const address = await shimStart(this.commandOptions(r), h ? runcOptionsAny(h) : undefined);
      this.log.info({ address, task: r.id }, "restarted shim");
      return await this.tryConnect(address, 15_000); // a Node start under load can take seconds
    } catch (err) {
      this.log.warn({ err, task: r.id }, "restarting the shim failed");
      return undefined;
    }
  }

  // ---- dead shim detection ----------------------------------------------------------------

  private onConnectionClosed(conn: ShimConnection, reason: Error | undefined): void {
    if (this.conns.get(conn.key) === conn) this.conns.delete(conn.key);
    if (conn.closingOnPurpose || this.closed || reason === undefined || conn.tasks.size === 0) return;
    this.log.warn({ address: conn.address, err: reason }, "shim connection lost");
    conn.recovering = this.recoverConnection(conn).catch((err: unknown) =>
      this.log.error({ err }, "shim connection recovery failed"),
    );
  }

  /** One quick reconnect; for berth's shim a restart; otherwise every task of the shim is reported exited. */
  private async recoverConnection(conn: ShimConnection): Promise<void> {
    await sleep(this.opts.reconnectDelayMs ?? 200);
    const entries = [...conn.tasks].map((k) => this.tasks.get(k)).filter((e): e is TaskEntry => e !== undefined);
    for (const e of entries) conn.tasks.delete(key(e.record.namespace, e.record.id));
    // e.conn stays on the old connection until adopt() or markDead() decides, so calls
    // meanwhile wait on conn.recovering instead of failing.
    const mine = entries.filter((e) => e.conn === conn);
    await this.reattach(conn.address, mine, 1000);
  }

  /**
   * A shim killed outright leaves its socket file behind (the runc shim's `delete` does not
   * remove it). Removed only when nothing accepts connections on it.
   */
  private async removeStaleSocket(address: string): Promise<void> {
    const path = addressKey(address);
    try {
      const st = await lstat(path);
      if (!st.isSocket()) return;
      const probe = await TtrpcClient.connect(path, { connectTimeoutMs: 1000 }).catch((err: unknown) => err as Error);
      if (probe instanceof TtrpcClient) {
        probe.close();
        return;
      }
      if ((probe.cause as NodeJS.ErrnoException | undefined)?.code !== "ECONNREFUSED") return;
      await unlink(path);
      this.log.info({ address }, "removed the socket of a dead shim");
    } catch {
      // already gone
    }
  }

  /** Reports the task exited (unless its exit was already reported) and cleans up with the shim's `delete` command. */
  private markDead(e: TaskEntry, reason: string): void {
    if (e.dead) return;
    const { namespace, id } = e.record;
    const known = e.lastExit;
    const exitedAt = known?.exitedAt ?? new Date();
    const tomb: Tombstone = {
      pid: known?.pid ?? 0,
      exitStatus: known?.exitStatus ?? 255,
      exitedAt,
      reason,
      cleanup: Promise.resolve(),
    };
    e.dead = tomb;
    e.conn = undefined;
    this.log.warn({ namespace, task: id, reason }, "task reported exited: its shim is gone");
    tomb.cleanup = this.runDeleteCommand(e.record)
      .then((r) => {
        if (!known && r.pid) tomb.pid = r.pid;
      })
      .catch((err: unknown) => this.log.warn({ err, task: id }, "shim delete after a dead shim failed"));
    if (!known) this.emitInitExit(namespace, id, { pid: tomb.pid, exitStatus: tomb.exitStatus, exitedAt, reason });
  }

  /** An exit of a task's init process that the manager itself learned of (no TaskExit came). */
  private emitInitExit(
    namespace: string,
    id: string,
    exit: { pid: number; exitStatus: number; exitedAt: Date; reason?: string },
  ): void {
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

  // ---- plumbing ---------------------------------------------------------------------------

  private onShimEvent(ev: RuntimeEvent): void {
    if (ev.type === "exit" && ev.execId === "") {
      const e = this.tasks.get(key(ev.namespace, ev.containerId));
      if (e) e.lastExit = { pid: ev.pid, exitStatus: ev.exitStatus, exitedAt: ev.exitedAt };
    }
    this.hub.emit(ev);
  }

  private entry(namespace: string, id: string): TaskEntry {
    const e = this.tasks.get(key(namespace, id));
    if (!e) throw new NotFoundError(`task ${id} not found in namespace ${namespace}`);
    return e;
  }

  /**
   * Runs a call on the task's shim. A connection that drops mid-call is diagnosed first
   * (reconnect / restart / dead) and the call is retried once on the outcome; for a dead
   * shim `onDead` answers from the tombstone.
   */
  private async withTask<T>(
    namespace: string,
    id: string,
    fn: (c: TaskClient) => Promise<T>,
    onDead: (t: Tombstone, e: TaskEntry) => T | Promise<T>,
  ): Promise<T> {
    this.assertOpen();
    for (let attempt = 0; ; attempt++) {
      const e = this.entry(namespace, id);
      if (e.dead) return onDead(e.dead, e);
      const conn = e.conn;
      if (!conn) throw new UnavailableError(`task ${id}: no shim connection`);
      if (conn.recovering || conn.client.closed) {
        // Its tasks are being moved to a new connection or marked dead: wait for the verdict.
        if (conn.recovering && attempt < 3) {
          await conn.recovering;
          continue;
        }
        throw new UnavailableError(`task ${id}: the connection to its shim at ${conn.address} is closed`);
      }
      try {
        return await fn(conn.task);
      } catch (err) {
        if (attempt < 2 && isUnavailable(err) && conn.client.closed && !this.closed) {
          // The close handler has run (it is synchronous with the failure): wait for its verdict.
          if (conn.recovering) await conn.recovering;
          continue;
        }
        throw err;
      }
    }
  }

  /** The shared connection to a shim address; undefined when that shim is shutting down. */
  private async connection(address: string): Promise<ShimConnection | undefined> {
    const existing = this.conns.get(addressKey(address));
    if (existing && !existing.client.closed) {
      if (existing.closingOnPurpose) {
        await existing.closingOnPurpose;
        return undefined;
      }
      return existing;
    }
    const k = addressKey(address);
    let pending = this.connecting.get(k);
    if (!pending) {
      pending = this.dial(address, 10_000);
      this.connecting.set(k, pending);
      void pending.finally(() => this.connecting.delete(k)).catch(() => {});
    }
    return pending;
  }

  private async dial(address: string, timeoutMs: number): Promise<ShimConnection> {
    const client = await TtrpcClient.connect(address, { connectTimeoutMs: timeoutMs });
    // Shims outlive berthd; an idle connection must not keep berthd's event loop alive.
    client.unref();
    const conn = new ShimConnection(address, client);
    client.once("close", (reason) => this.onConnectionClosed(conn, reason));
    this.conns.set(conn.key, conn);
    return conn;
  }

  /** A connection if the shim at `address` accepts one within the deadline. */
  private async tryConnect(address: string, timeoutMs = 2000): Promise<ShimConnection | undefined> {
    const existing = this.conns.get(addressKey(address));
    if (existing && !existing.client.closed && !existing.closingOnPurpose) return existing;
    try {
      return await this.dial(address, timeoutMs);
    } catch (err) {
      this.log.debug({ err, address }, "shim unreachable");
      return undefined;
    }
  }

  private commandOptions(r: ShimRecord): ShimCommandOptions {
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
    };
  }

  private async runDeleteCommand(r: ShimRecord): Promise<{ pid: number; exitStatus: number; exitedAt: Date }> {
    try {
      await access(r.bundle);
    } catch {
      throw new NotFoundError(`bundle ${r.bundle} is gone; the shim delete command needs it as its working directory`);
    }
    const resp = await shimDelete(this.commandOptions(r));
    return { pid: resp.pid, exitStatus: resp.exitStatus, exitedAt: timestampToDate(resp.exitedAt) };
  }

  private md(namespace: string): Record<string, string> {
    return { [NAMESPACE_METADATA_KEY]: namespace };
  }

  private callOpts(
    namespace: string,
    timeoutMs = this.callTimeoutMs,
  ): { metadata: Record<string, string>; timeoutMs: number } {
    return { metadata: this.md(namespace), timeoutMs };
  }

  private assertOpen(): void {
    if (this.closed) throw new UnavailableError("shim manager is closed");
  }

  /**
   * Stops the events server and drops every shim connection. Shims and their containers keep
   * running (that is the point of shims); a new manager's recover() picks them up.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Idle shims have nothing to keep running for; shims with tasks outlive berthd.
    await Promise.all(
      [...this.berthGroups.values()]
        .filter(({ conn }) => conn.tasks.size === 0 && !conn.client.closed && !conn.closingOnPurpose)
        .map(({ conn, record }) =>
          this.shutdownConnection(conn, record).catch((err: unknown) =>
            this.log.warn({ err, address: conn.address }, "idle shim shutdown failed"),
          ),
        ),
    );
    this.berthGroups.clear();
    for (const e of this.tasks.values()) e.log?.close();
    for (const conn of this.conns.values()) conn.client.close();
    this.conns.clear();
    await this.events.close();
  }
}

/**
 * IO as the shim needs it. containerd-shim-runc-v2 (1.6) takes the scheme from stdout: with
 * `file://` it writes stdout AND stderr to stdout's file, but panics (killing the shim and
 * every task it serves) when stderr is empty, so an empty stderr becomes stdout's URI.
 */
function normalizeIO(o: { stdin?: string; stdout?: string; stderr?: string; terminal?: boolean }): {
  stdin: string;
  stdout: string;
  stderr: string;
  terminal: boolean;
} {
  const terminal = o.terminal ?? false;
  const stdout = o.stdout ?? "";
  let stderr = o.stderr ?? "";
  if (!terminal && !stderr && stdout.startsWith("file://")) stderr = stdout;
  return { stdin: o.stdin ?? "", stdout, stderr, terminal };
}

function deadNotRunning(t: Tombstone, e: TaskEntry): never {
  throw new NotFoundError(`task ${e.record.id} is not running: ${t.reason}`);
}
