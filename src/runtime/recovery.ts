// Finding shims again: at berthd start for every recorded task, and whenever a shim
// connection drops. A shim that answers keeps its tasks; berth's shim, when gone, is started
// again with the task's original arguments and re-adopts its containers; any other task whose
// shim is gone gets a tombstone (tombstones.ts). Never waits on a dead shim for more than a few
// seconds.
import { NotFoundError } from "../util/errors.js";
import type { ShimConnection, ShimConnections } from "./connections.js";
import { timestampToDate } from "./events.js";
import type { ShimRecord } from "./records.js";
import { runcOptionsAny } from "./runtime-classes.js";
import { type ShimEndpoint, readShimEndpoint } from "./shim-bootstrap.js";
import { shimStart } from "./shim-command.js";
import { ShimLogReader } from "./shim-log.js";
import type { RecoveredTask, TaskStatus } from "./task-runtime.js";
import { type TaskEntry, type TaskTable, isUnavailable, statusNames, taskKey } from "./task-table.js";
import { markDead } from "./tombstones.js";
import { sleep } from "../util/sleep.js";

/** How many times recovery connects (or restarts) again after a shim dropped the connection mid-adoption. */
const RECONNECT_ROUNDS = 3;

export class ShimRecovery {
  constructor(
    private readonly table: TaskTable,
    private readonly conns: ShimConnections,
  ) {}

  /**
   * Reattaches to the shims of every recorded task (berthd start). A shim that answers keeps
   * its tasks; berth's shim, when gone, is started again to re-adopt its containers; any
   * other task whose shim is gone is reported exited (255, with the reason) and cleaned up
   * with the shim's `delete` command. Never waits on a dead shim for more than a few seconds.
   */
  async recover(): Promise<RecoveredTask[]> {
    this.table.assertOpen();
    const records = (await this.table.opts.records.list()).filter(
      (r) => !this.table.tasks.has(taskKey(r.namespace, r.id)),
    );
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
        log = ShimLogReader.open(record.bundle, this.table.log.child({ namespace: record.namespace, task: record.id }));
      } catch (err) {
        this.table.log.warn({ err, task: record.id }, "cannot open the shim log fifo of a recovered task");
      }
      const e: TaskEntry = { record, conn: undefined, dead: undefined, log, lastExit: undefined, started: false };
      this.table.tasks.set(taskKey(record.namespace, record.id), e);
      entries.push(e);
    }
    const endpoint = await readShimEndpoint(records[0]!.bundle, address);
    const { conn, restarted, statuses } = await this.reattach(endpoint, entries, 2000);
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
      if (conn.tasks.size === 0) await this.conns.shutdown(conn, records[0]!);
      else if (this.table.isRestartable(records[0]!)) this.conns.setGroup(records[0]!, conn, true);
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
    endpoint: ShimEndpoint,
    entries: TaskEntry[],
    connectTimeoutMs: number,
  ): Promise<{ conn: ShimConnection | undefined; restarted: boolean; statuses: Map<TaskEntry, TaskStatus> }> {
    const { address } = endpoint;
    const statuses = new Map<TaskEntry, TaskStatus>();
    const restartable = entries.find((e) => this.table.isRestartable(e.record));
    let pending = entries;
    let conn: ShimConnection | undefined;
    let restarted = false;
    for (let round = 0; pending.length > 0 && !this.table.closed; round++) {
      if (round > 0) await sleep(this.table.opts.reconnectDelayMs ?? 200);
      conn = await this.conns.tryConnect(endpoint, connectTimeoutMs);
      if (!conn && restartable && !this.table.closed) {
        conn = await this.restartShim(restartable.record);
        restarted = true;
      }
      if (!conn) {
        for (const e of pending) markDead(this.table, e, `shim exited: ${address} unreachable`);
        await this.conns.removeStaleSocket(address);
        break;
      }
      const lost: TaskEntry[] = [];
      for (const e of pending) {
        const status = await this.adopt(e, conn, round < RECONNECT_ROUNDS - 1);
        if (status === "lost") lost.push(e);
        else if (status !== undefined) statuses.set(e, status);
      }
      if (lost.length > 0) {
        this.table.log.warn(
          { address, tasks: lost.length },
          "shim connection lost while adopting its tasks; trying again",
        );
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
      const s = await conn.task.state({ id, execId: "" }, this.table.callOpts(namespace, 15_000));
      e.conn = conn;
      conn.tasks.add(taskKey(namespace, id));
      if (e.record.address !== conn.address) {
        e.record = { ...e.record, address: conn.address };
        await this.table.opts.records.put(e.record);
      }
      const status = statusNames[s.status] ?? "unknown";
      if (status !== "created" && status !== "unknown") e.started = true;
      if (status === "stopped" && !e.lastExit) {
        // It exited while we were not connected (a restarted shim, or berthd down): its
        // TaskExit may never reach us, and subscribers keep task state from exit events.
        const exit = {
          pid: s.pid,
          exitStatus: s.exitStatus,
          exitedAt: s.exitedAt ? timestampToDate(s.exitedAt) : new Date(),
        };
        e.lastExit = exit;
        this.table.emitInitExit(namespace, id, exit);
      }
      return status;
    } catch (err) {
      if (lostIsRetryable && isUnavailable(err) && conn.client.closed) return "lost";
      const why =
        err instanceof NotFoundError
          ? `shim at ${conn.address} has no task ${id}`
          : `shim at ${conn.address} did not answer: ${(err as Error).message}`;
      markDead(this.table, e, why);
      return undefined;
    }
  }

  /** Runs berth's shim `start` again with the task's original arguments; the new shim re-adopts its monitors. */
  private async restartShim(r: ShimRecord): Promise<ShimConnection | undefined> {
    const h = this.table.handlerOf(r);
    try {
      const endpoint = await shimStart(this.table.commandOptions(r), h ? runcOptionsAny(h) : undefined);
      this.table.log.info({ address: endpoint.address, task: r.id }, "restarted shim");
      return await this.conns.tryConnect(endpoint, 15_000); // a Node start under load can take seconds
    } catch (err) {
      this.table.log.warn({ err, task: r.id }, "restarting the shim failed");
      return undefined;
    }
  }

  /** A connection closed: unless on purpose (or idle), diagnose it (reconnect, restart, or dead). */
  onConnectionClosed(conn: ShimConnection, reason: Error | undefined): void {
    this.conns.drop(conn);
    if (conn.closingOnPurpose || this.table.closed || reason === undefined || conn.tasks.size === 0) return;
    this.table.log.warn({ address: conn.address, err: reason }, "shim connection lost");
    conn.recovering = this.recoverConnection(conn).catch((err: unknown) =>
      this.table.log.error({ err }, "shim connection recovery failed"),
    );
  }

  /** One quick reconnect; for berth's shim a restart; otherwise every task of the shim is reported exited. */
  private async recoverConnection(conn: ShimConnection): Promise<void> {
    await sleep(this.table.opts.reconnectDelayMs ?? 200);
    const entries = [...conn.tasks].map((k) => this.table.tasks.get(k)).filter((e): e is TaskEntry => e !== undefined);
    for (const e of entries) conn.tasks.delete(taskKey(e.record.namespace, e.record.id));
    // e.conn stays on the old connection until adopt() or markDead() decides, so calls
    // meanwhile wait on conn.recovering instead of failing.
    const mine = entries.filter((e) => e.conn === conn);
    await this.reattach(conn.endpoint, mine, 1000);
  }
}
