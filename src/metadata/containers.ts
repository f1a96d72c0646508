// Container records: the durable facts of a CRI container (config, pod, image, log path)
// and its lifecycle phase. Live facts (running, pid) come from the shim; what this table
// keeps of the process is what the CRI's status store (cri/store) persists on every change:
// the start time when StartContainer succeeded, and the exit (code, time, reason) once it is
// reported, settled when the task is deleted from its shim, because after that nothing alive
// knows it any more (DESIGN.md principle 2). A container name is unique
// per (pod sandbox, name, attempt).
//
// The rows are read on every ListContainers (kubelet polls it every second), so the class
// keeps a copy of the table in memory, written through: every change is committed to SQLite
// first and mirrored only once the statement succeeded. berthd is the table's one writer and
// builds one ContainerMetadata over it, so the copy never differs from the database.
import { AlreadyExistsError } from "../util/errors.js";
import { statements, unsyncedTransaction, type Db, type Statement } from "./db.js";

/** creating: CreateContainer in progress; created: it exists; removing: RemoveContainer in progress. */
export type ContainerPhase = "creating" | "created" | "removing";

export interface ContainerExit {
  exitCode: number;
  /** ns since the epoch */
  finishedAt: bigint;
  /** Completed, Error, OOMKilled, or why berth does not know better */
  reason: string;
  message: string;
}

export interface ContainerRow {
  id: string;
  sandboxId: string;
  name: string;
  attempt: number;
  /** runtime.v1.ContainerConfig, protobuf bytes */
  config: Buffer;
  /** the image as the CRI named it */
  imageRef: string;
  /** the resolved image id (config digest) */
  imageId: string;
  /** absolute log file path; "" when the pod has no log directory */
  logPath: string;
  /** the signal StopContainer sends first (the image's STOPSIGNAL or the CRI's), e.g. "SIGTERM" */
  stopSignal: string;
  phase: ContainerPhase;
  createdAt: bigint;
  /** 0n until started */
  startedAt: bigint;
  /** set once the task was deleted after its exit */
  exit: ContainerExit | undefined;
}

interface RawContainer {
  id: string;
  sandbox_id: string;
  name: string;
  attempt: number;
  config: Buffer;
  image_ref: string;
  image_id: string;
  log_path: string;
  stop_signal: string;
  phase: ContainerPhase;
  created_at: string;
  started_at: string;
  exit_code: number | null;
  finished_at: string | null;
  reason: string | null;
  message: string | null;
}

export const containersMigration = `
  -- One row per CRI container.
  CREATE TABLE containers (
    id          TEXT PRIMARY KEY,
    sandbox_id  TEXT NOT NULL,
    name        TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    config      BLOB NOT NULL,            -- runtime.v1.ContainerConfig, protobuf
    image_ref   TEXT NOT NULL,
    image_id    TEXT NOT NULL,
    log_path    TEXT NOT NULL DEFAULT '',
    stop_signal TEXT NOT NULL DEFAULT 'SIGTERM',
    phase       TEXT NOT NULL CHECK (phase IN ('creating', 'created', 'removing')),
    created_at  TEXT NOT NULL,            -- ns since epoch
    started_at  TEXT NOT NULL DEFAULT '0',
    exit_code   INTEGER,                  -- final exit, once the task is deleted
    finished_at TEXT,
    reason      TEXT,
    message     TEXT,
    UNIQUE (sandbox_id, name, attempt)
  );
  CREATE INDEX containers_by_sandbox ON containers(sandbox_id);
  -- Where each task's shim is (runtime.ShimRecord), so a restarted berthd finds it again.
  CREATE TABLE shim_records (
    namespace    TEXT NOT NULL,
    id           TEXT NOT NULL,
    address      TEXT NOT NULL,
    handler      TEXT NOT NULL,
    runtime_type TEXT NOT NULL,
    shim_binary  TEXT NOT NULL,
    bundle       TEXT NOT NULL,
    sandbox_id   TEXT,
    created_at   TEXT NOT NULL,
    PRIMARY KEY (namespace, id)
  );
`;

function toRow(r: RawContainer): ContainerRow {
  return {
    id: r.id,
    sandboxId: r.sandbox_id,
    name: r.name,
    attempt: r.attempt,
    config: r.config,
    imageRef: r.image_ref,
    imageId: r.image_id,
    logPath: r.log_path,
    stopSignal: r.stop_signal,
    phase: r.phase,
    createdAt: BigInt(r.created_at),
    startedAt: BigInt(r.started_at),
    exit:
      r.exit_code === null
        ? undefined
        : {
            exitCode: r.exit_code,
            finishedAt: BigInt(r.finished_at ?? "0"),
            reason: r.reason ?? "",
            message: r.message ?? "",
          },
  };
}

export class ContainerMetadata {
  /** The table, in created_at order; loaded on first use. */
  private rows: Map<string, ContainerRow> | undefined;

  /** Statements compiled once (db.ts statements()). */
  private readonly sql: (sql: string) => Statement;

  constructor(private readonly db: Db) {
    this.sql = statements(db);
  }

  private table(): Map<string, ContainerRow> {
    if (!this.rows) {
      const all = this.sql(`SELECT * FROM containers ORDER BY created_at`).all() as RawContainer[];
      this.rows = new Map(all.map((r) => [r.id, toRow(r)]));
    }
    return this.rows;
  }

  /** Callers get their own copy of a row: the mirror changes only through this class. */
  private static copy(r: ContainerRow): ContainerRow {
    return { ...r };
  }

  private update(id: string, change: Partial<ContainerRow>): void {
    const rows = this.table();
    const r = rows.get(id);
    if (r) rows.set(id, { ...r, ...change });
  }

  insert(c: ContainerRow): void {
    const rows = this.table();
    try {
      this.sql(
        `INSERT INTO containers (id, sandbox_id, name, attempt, config, image_ref, image_id, log_path, stop_signal, phase, created_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ).run(
        c.id,
        c.sandboxId,
        c.name,
        c.attempt,
        c.config,
        c.imageRef,
        c.imageId,
        c.logPath,
        c.stopSignal,
        c.phase,
        c.createdAt.toString(),
      );
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code !== "SQLITE_CONSTRAINT_UNIQUE" && code !== "SQLITE_CONSTRAINT_PRIMARYKEY") throw err;
      const holder = this.sql(`SELECT id FROM containers WHERE sandbox_id = ? AND name = ? AND attempt = ?`).get(
        c.sandboxId,
        c.name,
        c.attempt,
      ) as { id: string } | undefined;
      throw new AlreadyExistsError(
        `container name "${c.name}" (attempt ${c.attempt}) is already used by container ${holder?.id ?? c.id} in pod ${c.sandboxId}: remove it first or use another attempt`,
      );
    }
    // As the database holds it: only the columns INSERT wrote (no start, no exit yet).
    rows.set(c.id, { ...c, startedAt: 0n, exit: undefined });
  }

  get(id: string): ContainerRow | undefined {
    const r = this.table().get(id);
    return r ? ContainerMetadata.copy(r) : undefined;
  }

  list(): ContainerRow[] {
    return [...this.table().values()].map(ContainerMetadata.copy);
  }

  bySandbox(sandboxId: string): ContainerRow[] {
    return [...this.table().values()].filter((r) => r.sandboxId === sandboxId).map(ContainerMetadata.copy);
  }

  idsWithPrefix(prefix: string): string[] {
    return [...this.table().keys()].filter((id) => id.startsWith(prefix));
  }

  setPhase(id: string, phase: ContainerPhase): void {
    this.table();
    this.sql(`UPDATE containers SET phase = ? WHERE id = ?`).run(phase, id);
    this.update(id, { phase });
  }

  setStarted(id: string, startedAt: bigint): void {
    this.table();
    this.sql(`UPDATE containers SET started_at = ? WHERE id = ?`).run(startedAt.toString(), id);
    this.update(id, { startedAt });
  }

  /** Replaces the stored ContainerConfig (UpdateContainerResources changes its resources). */
  setConfig(id: string, config: Buffer): void {
    this.table();
    this.sql(`UPDATE containers SET config = ? WHERE id = ?`).run(config, id);
    this.update(id, { config });
  }

  /**
   * Records the exit reported for the container. The CRI's status store (cri/store) is the one
   * writer and decides when an exit may still change (an exit heard, then settled once its task
   * is deleted); this just persists what it decided.
   */
  setExit(id: string, e: ContainerExit): void {
    this.table();
    const r = this.sql(
      `UPDATE containers SET exit_code = ?, finished_at = ?, reason = ?, message = ? WHERE id = ?`,
    ).run(e.exitCode, e.finishedAt.toString(), e.reason, e.message, id);
    if (r.changes > 0) this.update(id, { exit: { ...e } });
  }

  delete(id: string): void {
    this.table();
    this.sql(`DELETE FROM containers WHERE id = ?`).run(id);
    this.rows?.delete(id);
  }

  /**
   * Runs `fn` in one transaction (a savepoint inside another), so its writes commit (and sync)
   * once. When it fails the mirror is dropped, to be read again: it may hold what was rolled back.
   * `synced: false`: its commit is not synced by itself (db.ts unsyncedTransaction says when that is right).
   */
  transaction<T>(fn: () => T, opts: { synced?: boolean } = {}): T {
    try {
      return opts.synced === false ? unsyncedTransaction(this.db, fn) : this.db.transaction(fn)();
    } catch (err) {
      this.rows = undefined;
      throw err;
    }
  }
}

/** The runtime's shim records (runtime.ShimRecordStore) in the metadata database. */
export interface ShimRecordRow {
  namespace: string;
  id: string;
  address: string;
  handler: string;
  runtimeType: string;
  shimBinary: string;
  bundle: string;
  sandboxId?: string;
  createdAt: string;
}

interface RawShimRecord {
  namespace: string;
  id: string;
  address: string;
  handler: string;
  runtime_type: string;
  shim_binary: string;
  bundle: string;
  sandbox_id: string | null;
  created_at: string;
}

export class ShimRecordMetadata {
  /** Statements compiled once (db.ts statements()). */
  private readonly sql: (sql: string) => Statement;

  constructor(private readonly db: Db) {
    this.sql = statements(db);
  }

  /**
   * Not synced by itself (unsyncedTransaction): a record names a live shim, and after a power cut
   * no shim lives, so what a lost record would have told recovery is already true; a crash of
   * berthd loses nothing (the commit is in the WAL). Both creates that write one end in a synced
   * commit that syncs it too (StartContainer's start or start-failed, RunPodSandbox's ready or its undo).
   * Its sync was the second disk flush of every StartContainer and RunPodSandbox (issue 15).
   */
  async put(r: ShimRecordRow): Promise<void> {
    unsyncedTransaction(this.db, () => this.insert(r));
  }

  private insert(r: ShimRecordRow): void {
    this.sql(
      `INSERT INTO shim_records (namespace, id, address, handler, runtime_type, shim_binary, bundle, sandbox_id, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT(namespace, id) DO UPDATE SET address = excluded.address, handler = excluded.handler,
           runtime_type = excluded.runtime_type, shim_binary = excluded.shim_binary, bundle = excluded.bundle,
           sandbox_id = excluded.sandbox_id, created_at = excluded.created_at`,
    ).run(
      r.namespace,
      r.id,
      r.address,
      r.handler,
      r.runtimeType,
      r.shimBinary,
      r.bundle,
      r.sandboxId ?? null,
      r.createdAt,
    );
  }

  async get(namespace: string, id: string): Promise<ShimRecordRow | undefined> {
    const r = this.sql(`SELECT * FROM shim_records WHERE namespace = ? AND id = ?`).get(namespace, id) as
      RawShimRecord | undefined;
    return r ? toShimRecord(r) : undefined;
  }

  async delete(namespace: string, id: string): Promise<void> {
    this.sql(`DELETE FROM shim_records WHERE namespace = ? AND id = ?`).run(namespace, id);
  }

  async list(): Promise<ShimRecordRow[]> {
    return (this.sql(`SELECT * FROM shim_records ORDER BY created_at`).all() as RawShimRecord[]).map(toShimRecord);
  }
}

function toShimRecord(r: RawShimRecord): ShimRecordRow {
  return {
    namespace: r.namespace,
    id: r.id,
    address: r.address,
    handler: r.handler,
    runtimeType: r.runtime_type,
    shimBinary: r.shim_binary,
    bundle: r.bundle,
    ...(r.sandbox_id ? { sandboxId: r.sandbox_id } : {}),
    createdAt: r.created_at,
  };
}
