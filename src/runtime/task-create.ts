// Creating a task: find or start its shim (joining a warm berth shim when there is one),
// record the task durably before Create so a crash leaves something recover() finds, then
// Create in the shim. Whatever was made is undone when a step fails, as containerd does.
import { accessSync, constants, writeFileSync } from "node:fs";
import { basename, isAbsolute, join, resolve } from "node:path";

import { AlreadyExistsError, InvalidArgumentError, UnavailableError } from "../util/errors.js";
import type { ShimConnection, ShimConnections } from "./connections.js";
import { type ShimRecord, validateIdentifier } from "./records.js";
import { BERTH_RUNTIME_TYPE, type RuntimeHandler, resolveShimBinary, runcOptionsAny } from "./runtime-classes.js";
import { confirmsStartAtCreate, shimVersion } from "./shim-features.js";
import { ShimLogReader } from "./shim-log.js";
import { normalizeIO } from "./task-client.js";
import type { CreateTaskOptions, CreatedTask } from "./task-runtime.js";
import { type TaskTable, taskKey } from "./task-table.js";

/**
 * Create metadata asking berth's shim to start the task at once when it can (the shim's copy,
 * with what it does, is START_AT_ONCE_METADATA_KEY in shim/start-at-once.ts). Other shims ignore it.
 */
export const START_AT_ONCE_METADATA_KEY = "berth-start-at-once";

/**
 * With it, Create metadata asking berth's shim (0.2 and later) to confirm at Create the task it
 * ran at once, so that no Start is sent: the caller's start() then answers from the Create
 * (TaskEntry.startConfirmedPid). The shim's copy is START_CONFIRMED_METADATA_KEY in
 * shim/start-at-once.ts.
 */
export const START_CONFIRMED_METADATA_KEY = "berth-start-confirmed";

export class TaskCreator {
  /** Tasks whose create is in flight (so a second create of the same id is refused at once). */
  private readonly creating = new Set<string>();

  constructor(
    private readonly table: TaskTable,
    private readonly conns: ShimConnections,
  ) {}

  /** Starts (or joins) a shim for the bundle and creates the task in it. Everything it made is undone on failure. */
  async create(req: CreateTaskOptions): Promise<CreatedTask> {
    this.table.assertOpen();
    validateIdentifier("namespace", req.namespace);
    validateIdentifier("task id", req.id);
    const handler = this.table.opts.handlers.get(req.handler);
    const bundle = checkBundle(req.bundle, req.id);
    const k = taskKey(req.namespace, req.id);
    if (this.table.tasks.has(k) || this.creating.has(k) || (await this.table.opts.records.get(req.namespace, req.id))) {
      throw new AlreadyExistsError(`task ${req.id} already exists in namespace ${req.namespace}`);
    }
    const shimBinary = resolveShimBinary(handler.runtimeType, this.table.opts.shimLookup);
    this.creating.add(k);
    try {
      return await this.createIn(req, handler, bundle, shimBinary);
    } finally {
      this.creating.delete(k);
    }
  }

  private async createIn(
    req: CreateTaskOptions,
    handler: RuntimeHandler,
    bundle: string,
    shimBinary: string,
  ): Promise<CreatedTask> {
    const k = taskKey(req.namespace, req.id);
    const log = this.table.log.child({ namespace: req.namespace, task: req.id });
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
        const warm = attempt === 0 ? this.conns.warmShim(record) : undefined;
        if (warm) {
          // berth's shim serves every task of one namespace; its `start` command would only
          // print this same address after spawning a whole Node process to find it out.
          record.address = warm.address;
          warm.tasks.add(k); // claimed before any await, so an idle-shutdown cannot race us
          writeFileSync(join(bundle, "address"), warm.address, { mode: 0o600 });
          conn = warm;
          break;
        }
        const endpoint = await this.conns.startShim(record, options);
        record.address = endpoint.address;
        conn = await this.conns.connection(endpoint);
        if (conn) {
          if (record.runtimeType === BERTH_RUNTIME_TYPE) this.conns.setGroup(record, conn);
          break;
        }
        if (attempt >= 2)
          throw new UnavailableError(`shim at ${record.address} kept shutting down while task ${req.id} was created`);
      }
      conn.tasks.add(k);
      // Recorded before Create: a crash after Create must leave a record that recover() finds.
      await this.table.opts.records.put(record);
      recorded = true;
      const io = normalizeIO(req);
      const confirm =
        req.startAtOnce === true &&
        record.runtimeType === BERTH_RUNTIME_TYPE &&
        confirmsStartAtCreate(await shimVersion(conn, req.id, this.table.callOpts(req.namespace)));
      if (confirm) this.table.startExits.hold(k);
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
        req.startAtOnce ? this.startAtOnceOpts(req.namespace, confirm) : this.table.callOpts(req.namespace),
      );
      this.table.tasks.set(k, {
        record,
        conn,
        dead: undefined,
        log: shimLog,
        lastExit: undefined,
        started: confirm,
        startConfirmedPid: confirm ? resp.pid : undefined,
      });
      log.info({ address: record.address, pid: resp.pid, handler: handler.name }, "task created");
      return { pid: resp.pid, address: record.address };
    } catch (err) {
      this.table.startExits.release(k);
      log.warn({ err }, "task create failed; cleaning up");
      await this.undoCreate(record, conn, recorded).catch((e: unknown) =>
        log.warn({ err: e }, "cleanup after failed create"),
      );
      shimLog.close();
      throw err;
    }
  }

  private startAtOnceOpts(
    namespace: string,
    confirm: boolean,
  ): { metadata: Record<string, string>; timeoutMs: number } {
    const o = this.table.callOpts(namespace);
    const metadata: Record<string, string> = { ...o.metadata, [START_AT_ONCE_METADATA_KEY]: "1" };
    if (confirm) metadata[START_CONFIRMED_METADATA_KEY] = "1";
    return { ...o, metadata };
  }

  /** What containerd does when Create fails: delete the task in the shim, shut the shim down if idle, run `delete`. */
  private async undoCreate(record: ShimRecord, conn: ShimConnection | undefined, recorded: boolean): Promise<void> {
    const k = taskKey(record.namespace, record.id);
    if (conn) {
      conn.tasks.delete(k);
      if (!conn.client.closed) {
        await conn.task
          .delete({ id: record.id, execId: "" }, this.table.callOpts(record.namespace, 10_000))
          .catch(() => {});
        if (conn.tasks.size === 0) await this.conns.shutdown(conn, record);
      }
    }
    await this.table
      .runDeleteCommand(record)
      .catch((err: unknown) =>
        this.table.log.debug({ err, task: record.id }, "shim delete after failed create (nothing to clean is normal)"),
      );
    if (recorded) await this.table.opts.records.delete(record.namespace, record.id);
  }
}

/**
 * Checked synchronously, as the warm shim's address file is written: berthd's own bundle dir on a
 * local disk answers in microseconds, where each thread-pool round trip waits its turn on a busy
 * daemon, on the path of every StartContainer and RunPodSandbox.
 */
function checkBundle(bundle: string, id: string): string {
  if (!bundle || !isAbsolute(bundle))
    throw new InvalidArgumentError(`bundle path ${JSON.stringify(bundle)} must be absolute`);
  const dir = resolve(bundle);
  if (basename(dir) !== id) {
    // containerd-shim-runc-v2's delete finds the bundle as <dirname(cwd)>/<id>.
    throw new InvalidArgumentError(`bundle directory ${dir} must be named after the task id ${JSON.stringify(id)}`);
  }
  try {
    accessSync(dir, constants.X_OK);
  } catch {
    throw new InvalidArgumentError(`bundle directory ${dir} does not exist`);
  }
  try {
    accessSync(join(dir, "config.json"), constants.R_OK);
  } catch {
    throw new InvalidArgumentError(`bundle ${dir} has no config.json`);
  }
  return dir;
}
