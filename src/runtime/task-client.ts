// The task calls (containerd.task.v2.Task) on a task's shim, as TaskRuntime offers them. Each
// goes through withTask: it finds the task's connection, waits out a connection being
// diagnosed, retries once after a drop, and answers from the tombstone when the shim is gone.
import { Metrics as V1Metrics } from "../gen/cgroups/stats/v1/metrics.js";
import { Metrics as V2Metrics } from "../gen/cgroups/stats/v2/metrics.js";
import type { ProcessInfo } from "../gen/containerd/types/task/task.js";
import type { Any } from "../gen/google/protobuf/any.js";
import { InvalidArgumentError, NotFoundError, UnavailableError } from "../util/errors.js";
import type { ShimConnections, TaskRpc } from "./connections.js";
import { timestampToDate } from "./events.js";
import { validateIdentifier } from "./records.js";
import type { ExecOptions, ExitResult, ShimInfo, TaskState, TaskStats } from "./task-runtime.js";
import { type TaskEntry, type TaskTable, isUnavailable, statusNames, taskKey } from "./task-table.js";
import { type Tombstone, deadNotRunning, tombstoneExit } from "./tombstones.js";

/** Type URLs containerd's typeurl gives OCI spec types (JSON-encoded in the Any). */
export const OCI_PROCESS_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Process";
export const OCI_LINUX_RESOURCES_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources";

/**
 * IO as the shim needs it. containerd-shim-runc-v2 (1.6) takes the scheme from stdout: with
 * `file://` it writes stdout AND stderr to stdout's file, but panics (killing the shim and
 * every task it serves) when stderr is empty, so an empty stderr becomes stdout's URI.
 */
export function normalizeIO(o: { stdin?: string; stdout?: string; stderr?: string; terminal?: boolean }): {
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

export class TaskClient {
  constructor(
    private readonly table: TaskTable,
    private readonly conns: ShimConnections,
  ) {}

  /** Starts a created task (execId "") or exec process; resolves with its pid. */
  async start(namespace: string, id: string, execId = ""): Promise<number> {
    const confirmed = execId === "" ? this.table.tasks.get(taskKey(namespace, id)) : undefined;
    if (confirmed?.startConfirmedPid !== undefined) {
      // Its Create confirmed the start already (task-create.ts): this start only collects it.
      const pid = confirmed.startConfirmedPid;
      confirmed.startConfirmedPid = undefined;
      // As the shim's Start would: an exit held since Create goes out now (start-exits.ts).
      this.table.startExits.release(taskKey(namespace, id));
      return pid;
    }
    const pid = await this.withTask(
      namespace,
      id,
      async (c) => (await c.start({ id, execId }, this.table.callOpts(namespace))).pid,
      deadNotRunning,
    );
    if (execId === "") this.table.entry(namespace, id).started = true;
    return pid;
  }

  /** Adds an exec process to a running task (start it with start(namespace, id, execId)). */
  async exec(namespace: string, id: string, execId: string, o: ExecOptions): Promise<void> {
    validateIdentifier("exec id", execId);
    const spec: Any = { typeUrl: OCI_PROCESS_TYPE_URL, value: Buffer.from(JSON.stringify(o.spec)) };
    const io = normalizeIO(o);
    await this.withTask(
      namespace,
      id,
      (c) => c.exec({ id, execId, ...io, spec }, this.table.callOpts(namespace)),
      deadNotRunning,
    );
  }

  /** Signals the init process (or an exec process), or with `all` every process of the task. */
  async kill(namespace: string, id: string, signal: number, o: { execId?: string; all?: boolean } = {}): Promise<void> {
    // A task killed before its confirmed start was collected: its exit is let through, as the shim does.
    if (!o.execId) this.table.startExits.release(taskKey(namespace, id));
    await this.withTask(
      namespace,
      id,
      (c) => c.kill({ id, execId: o.execId ?? "", signal, all: o.all ?? false }, this.table.callOpts(namespace)),
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
        const r = await c.wait({ id, execId }, { metadata: this.table.md(namespace), signal: o.signal });
        return { pid: 0, exitStatus: r.exitStatus, exitedAt: timestampToDate(r.exitedAt) };
      },
      tombstoneExit,
    );
  }

  /** The state of the task (execId "") or an exec process, from the shim. */
  async state(namespace: string, id: string, execId = ""): Promise<TaskState> {
    const bundle = this.table.entry(namespace, id).record.bundle;
    return this.withTask(
      namespace,
      id,
      async (c) => {
        const s = await c.state({ id, execId }, this.table.callOpts(namespace));
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
      async (c) => (await c.pids({ id }, this.table.callOpts(namespace))).processes,
      deadNotRunning,
    );
  }

  async pause(namespace: string, id: string): Promise<void> {
    await this.withTask(namespace, id, (c) => c.pause({ id }, this.table.callOpts(namespace)), deadNotRunning);
  }

  async resume(namespace: string, id: string): Promise<void> {
    await this.withTask(namespace, id, (c) => c.resume({ id }, this.table.callOpts(namespace)), deadNotRunning);
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
      (c) => c.update({ id, resources: any, annotations }, this.table.callOpts(namespace)),
      deadNotRunning,
    );
  }

  /** Resource usage, decoded when it is cgroups v1 or v2 metrics. */
  async stats(namespace: string, id: string): Promise<TaskStats> {
    return this.withTask(
      namespace,
      id,
      async (c) => {
        const raw = (await c.stats({ id }, this.table.callOpts(namespace))).stats;
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
      (c) => c.resizePty({ id, execId, width, height }, this.table.callOpts(namespace)),
      deadNotRunning,
    );
  }

  /** Closes the stdin of the init process (execId "") or an exec process. */
  async closeIO(namespace: string, id: string, execId = ""): Promise<void> {
    await this.withTask(
      namespace,
      id,
      (c) => c.closeIO({ id, execId, stdin: true }, this.table.callOpts(namespace)),
      deadNotRunning,
    );
  }

  /** The shim's pid, the task's pid and the shim's version (the Connect call). */
  async connect(namespace: string, id: string): Promise<ShimInfo> {
    return this.withTask(
      namespace,
      id,
      async (c) => {
        const r = await c.connect({ id }, this.table.callOpts(namespace));
        return {
          shimPid: r.shimPid,
          taskPid: r.taskPid,
          version: r.version,
          address: this.table.entry(namespace, id).record.address,
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
        const r = await c.delete({ id, execId }, this.table.callOpts(namespace));
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
    this.table.startExits.release(taskKey(namespace, id));
    const e = this.table.entry(namespace, id);
    const result = await this.withTask(
      namespace,
      id,
      async (c): Promise<ExitResult> => {
        try {
          const r = await c.delete({ id, execId: "" }, this.table.callOpts(namespace));
          return { pid: r.pid, exitStatus: r.exitStatus, exitedAt: timestampToDate(r.exitedAt) };
        } catch (err) {
          if (!(err instanceof NotFoundError)) throw err;
          // The shim no longer knows the task: clean up what may be left, as after a dead shim.
          const r = await this.table.runDeleteCommand(e.record).catch(() => undefined);
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
        return tombstoneExit(t);
      },
    );
    // The shim's TaskExit has not come yet (containerd 2.x's runc shim can publish it after
    // answering Delete): report the exit now, before the task is gone (init-exits.ts).
    if (e.started && !e.lastExit && !e.dead) this.table.reportInitExit(e, result);
    // Likewise the shim's TaskDelete, which a shim shut down right after may never send.
    this.table.reportDelete(namespace, id, result);
    await this.forget(e);
    return result;
  }

  /** Drops a deleted task: its connection share (shutting the shim down when idle), record and log reader. */
  private async forget(e: TaskEntry): Promise<void> {
    this.table.tasks.delete(taskKey(e.record.namespace, e.record.id));
    e.log?.close();
    await this.conns.release(e);
    await this.table.opts.records.delete(e.record.namespace, e.record.id);
  }

  /**
   * Runs a call on the task's shim. A connection that drops mid-call is diagnosed first
   * (reconnect / restart / dead) and the call is retried once on the outcome; for a dead
   * shim `onDead` answers from the tombstone.
   */
  private async withTask<T>(
    namespace: string,
    id: string,
    fn: (c: TaskRpc) => Promise<T>,
    onDead: (t: Tombstone, e: TaskEntry) => T | Promise<T>,
  ): Promise<T> {
    this.table.assertOpen();
    for (let attempt = 0; ; attempt++) {
      const e = this.table.entry(namespace, id);
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
        if (attempt < 2 && isUnavailable(err) && conn.client.closed && !this.table.closed) {
          // The close handler has run (it is synchronous with the failure): wait for its verdict.
          if (conn.recovering) await conn.recovering;
          continue;
        }
        throw err;
      }
    }
  }
}
