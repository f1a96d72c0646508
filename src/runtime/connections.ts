// Connections to serving shims and warm shims. One ttrpc connection per shim socket, shared
// by all the shim's tasks. berth's shim serves every task of a namespace started through the
// same shim binary (a "group"): the live connection per group lets the next task join it
// without running `start` (a whole Node process) again, concurrent creates in one group share
// one `start`, and with keepIdleShims a group's shim stays up after its last task is deleted.
import { writeFile, lstat, unlink } from "node:fs/promises";
import { join } from "node:path";

import type { TaskDefinition } from "../gen/containerd/runtime/v2/task/shim.js";
import type { Any } from "../gen/google/protobuf/any.js";
import { type ServiceClient, TtrpcClient, createClient, socketPath } from "../ttrpc/index.js";
import type { ShimRecord } from "./records.js";
import { BERTH_RUNTIME_TYPE } from "./runtime-classes.js";
import { type ShimEndpoint, type TaskApiVersion, taskDefinition, writeShimEndpoint } from "./shim-bootstrap.js";
import { shimStart } from "./shim-command.js";
import { type TaskEntry, type TaskTable, isUnavailable, taskKey } from "./task-table.js";

/** The ttrpc client of containerd.task.v2.Task on one shim connection. */
export type TaskRpc = ServiceClient<typeof TaskDefinition>;

/** One ttrpc connection to a serving shim, shared by all its tasks. */
export class ShimConnection {
  readonly tasks = new Set<string>();
  /** Set while Shutdown is on its way: the close that follows is expected. */
  closingOnPurpose: Promise<void> | undefined;
  /** Set while a dropped connection is being diagnosed (reconnect, restart, or dead). */
  recovering: Promise<void> | undefined;
  readonly task: TaskRpc;

  constructor(
    /** The address as the shim printed it (what records hold). */
    readonly address: string,
    /** The task API the shim announced at start. */
    readonly taskApi: TaskApiVersion,
    readonly client: TtrpcClient,
  ) {
    this.task = createClient(taskDefinition(taskApi), client);
  }

  get endpoint(): ShimEndpoint {
    return { address: this.address, taskApi: this.taskApi };
  }

  /** The key connections are shared by: the socket path, so `unix:///x` and `/x` are one shim. */
  get key(): string {
    return addressKey(this.address);
  }
}

/** The tasks one berth shim serves: one namespace, one shim binary. */
export function groupKey(r: ShimRecord): string {
  return `${r.namespace}\0${r.shimBinary}`;
}

export function addressKey(address: string): string {
  return socketPath(address);
}

export class ShimConnections {
  /**
   * berth's shim serves every task of a namespace started through the same shim binary: its
   * live connection per such group, and the `start` command in flight per group (so pods
   * created at once start one shim, not one Node process each).
   */
  private readonly berthGroups = new Map<string, { conn: ShimConnection; record: ShimRecord }>();
  private readonly berthStarting = new Map<string, Promise<ShimEndpoint>>();
  private readonly conns = new Map<string, ShimConnection>();
  private readonly connecting = new Map<string, Promise<ShimConnection>>();

  constructor(
    private readonly table: TaskTable,
    /** Called when a connection closes (on purpose or not; `reason` is undefined for a clean close). */
    private readonly onClosed: (conn: ShimConnection, reason: Error | undefined) => void,
  ) {}

  /** Shims berthd holds a live ttrpc connection to. */
  get count(): number {
    return this.conns.size;
  }

  /** Forgets `conn` as the connection of its address, if it still is. */
  drop(conn: ShimConnection): void {
    if (this.conns.get(conn.key) === conn) this.conns.delete(conn.key);
  }

  /**
   * A live connection to berth's shim already serving tasks of the record's namespace through
   * the same shim binary, if any. Only for berth's shim, whose grouping (one serving process
   * per namespace and address) is known; other shims group their own way and get `start`.
   */
  warmShim(record: ShimRecord): ShimConnection | undefined {
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

  /** Makes `conn` the group's warm shim; with `ifAbsent`, only when the group has none. */
  setGroup(record: ShimRecord, conn: ShimConnection, ifAbsent = false): void {
    const g = groupKey(record);
    if (ifAbsent && this.berthGroups.has(g)) return;
    this.berthGroups.set(g, { conn, record });
  }

  /**
   * Runs the shim's `start` command (for berth's shim, once per group at a time) and records
   * the endpoint it announced in the task's bundle, for a restarted berthd.
   */
  async startShim(record: ShimRecord, options: Any | undefined): Promise<ShimEndpoint> {
    let endpoint: ShimEndpoint;
    const g = groupKey(record);
    const pending = record.runtimeType === BERTH_RUNTIME_TYPE ? this.berthStarting.get(g) : undefined;
    if (pending) {
      // Another task of the group is starting the shim; its address is ours too, but the
      // bundle's `address` file is per task.
      endpoint = await pending;
      await writeFile(join(record.bundle, "address"), endpoint.address, { mode: 0o600 });
    } else {
      const starting = shimStart(this.table.commandOptions(record), options);
      if (record.runtimeType === BERTH_RUNTIME_TYPE) {
        this.berthStarting.set(g, starting);
        void starting.finally(() => this.berthStarting.delete(g)).catch(() => {});
      }
      endpoint = await starting;
      if (record.runtimeType !== BERTH_RUNTIME_TYPE) {
        // containerd 2.x's runc shim no longer writes the `address` file (1.x's did) but still
        // reads it from its first bundle when it exits, to remove its socket; without it a
        // shim whose group is named by a sandbox id rather than its first task's id leaves
        // the socket behind.
        await writeFile(join(record.bundle, "address"), endpoint.address, { mode: 0o600 });
      }
    }
    await writeShimEndpoint(record.bundle, endpoint);
    return endpoint;
  }

  /** The shared connection to a shim address; undefined when that shim is shutting down. */
  async connection(endpoint: ShimEndpoint): Promise<ShimConnection | undefined> {
    const existing = this.conns.get(addressKey(endpoint.address));
    if (existing && !existing.client.closed) {
      if (existing.closingOnPurpose) {
        await existing.closingOnPurpose;
        return undefined;
      }
      return existing;
    }
    const k = addressKey(endpoint.address);
    let pending = this.connecting.get(k);
    if (!pending) {
      pending = this.dial(endpoint, 10_000);
      this.connecting.set(k, pending);
      void pending.finally(() => this.connecting.delete(k)).catch(() => {});
    }
    return pending;
  }

  private async dial(endpoint: ShimEndpoint, timeoutMs: number): Promise<ShimConnection> {
    const client = await TtrpcClient.connect(endpoint.address, { connectTimeoutMs: timeoutMs });
    // Shims outlive berthd; an idle connection must not keep berthd's event loop alive.
    client.unref();
    const conn = new ShimConnection(endpoint.address, endpoint.taskApi, client);
    client.once("close", (reason) => this.onClosed(conn, reason));
    this.conns.set(conn.key, conn);
    return conn;
  }

  /** A connection if the shim at the endpoint accepts one within the deadline. */
  async tryConnect(endpoint: ShimEndpoint, timeoutMs = 2000): Promise<ShimConnection | undefined> {
    const existing = this.conns.get(addressKey(endpoint.address));
    if (existing && !existing.client.closed && !existing.closingOnPurpose) return existing;
    try {
      return await this.dial(endpoint, timeoutMs);
    } catch (err) {
      this.table.log.debug({ err, address: endpoint.address }, "shim unreachable");
      return undefined;
    }
  }

  /** Gives up a deleted task's share of its connection, shutting the shim down when it was the last (unless kept warm). */
  async release(e: TaskEntry): Promise<void> {
    const k = taskKey(e.record.namespace, e.record.id);
    const conn = e.conn;
    e.conn = undefined;
    if (!conn) return;
    conn.tasks.delete(k);
    if (conn.tasks.size > 0) return;
    const g = groupKey(e.record);
    const holder = this.berthGroups.get(g);
    if (
      this.table.opts.keepIdleShims &&
      this.table.isRestartable(e.record) &&
      !conn.client.closed &&
      (!holder || holder.conn === conn || holder.conn.client.closed)
    ) {
      // Registered here too (a shim recovered after a restart was not started by us), so
      // that close() finds and stops it.
      this.berthGroups.set(g, { conn, record: e.record });
      this.table.log.debug({ address: conn.address }, "shim idle; kept running for the next task");
    } else {
      await this.shutdown(conn, e.record);
    }
  }

  /** Asks an idle shim to exit and closes our connection; the close that follows is expected. */
  async shutdown(conn: ShimConnection, last: ShimRecord): Promise<void> {
    if (conn.closingOnPurpose) return conn.closingOnPurpose;
    conn.closingOnPurpose = (async () => {
      try {
        await conn.task.shutdown({ id: last.id, now: false }, this.table.callOpts(last.namespace, 10_000));
      } catch (err) {
        // A shim that exits before answering closes the connection: that is success.
        if (!isUnavailable(err)) this.table.log.warn({ err, address: conn.address }, "shim shutdown failed");
      } finally {
        this.drop(conn);
        conn.client.close();
      }
    })();
    return conn.closingOnPurpose;
  }

  /**
   * A shim killed outright leaves its socket file behind (the runc shim's `delete` does not
   * remove it). Removed only when nothing accepts connections on it.
   */
  async removeStaleSocket(address: string): Promise<void> {
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
      this.table.log.info({ address }, "removed the socket of a dead shim");
    } catch {
      // already gone
    }
  }

  /** berthd stops: idle warm shims are shut down (nothing to keep them for), every connection is dropped. */
  async close(): Promise<void> {
    await Promise.all(
      [...this.berthGroups.values()]
        .filter(({ conn }) => conn.tasks.size === 0 && !conn.client.closed && !conn.closingOnPurpose)
        .map(({ conn, record }) =>
          this.shutdown(conn, record).catch((err: unknown) =>
            this.table.log.warn({ err, address: conn.address }, "idle shim shutdown failed"),
          ),
        ),
    );
    this.berthGroups.clear();
  }

  /** Closes every connection (shims keep running). */
  closeAll(): void {
    for (const conn of this.conns.values()) conn.client.close();
    this.conns.clear();
  }
}
