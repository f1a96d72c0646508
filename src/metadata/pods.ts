// Pod sandbox records: the durable facts of a pod (its config, network namespace, IPs, runtime
// handler) and its lifecycle phase. Whether the sandbox process runs is asked of the shim
// (DESIGN.md principle 2). A pod name is unique per (name, namespace, uid, attempt), as
// kubelet expects: the UNIQUE constraint is what turns a duplicate into AlreadyExists.
import { AlreadyExistsError } from "../util/errors.js";
import { statements, type Db, type Statement } from "./db.js";

/**
 * creating: RunPodSandbox is in progress (a crash here is rolled back on start);
 * ready: the sandbox task was started; stopped: StopPodSandbox finished (network released);
 * removing: RemovePodSandbox is in progress (a crash here is finished on start).
 */
export type PodPhase = "creating" | "ready" | "stopped" | "removing";

export interface PodRow {
  id: string;
  name: string;
  namespace: string;
  uid: string;
  attempt: number;
  /** The CRI PodSandboxConfig as protobuf bytes. */
  config: Buffer;
  phase: PodPhase;
  /** ns since the epoch, as a decimal string (beyond 2^53). */
  createdAt: bigint;
  runtimeHandler: string;
  /** "" for a host-network pod or before the namespace exists. */
  netnsPath: string;
  /** Pod IPs, primary first. */
  ips: string[];
  /** The directory of the pod's hostname/hosts/resolv.conf/shm. */
  podDir: string;
  /**
   * When the sandbox process exited on its own (killed, OOM, crashed) while the pod was
   * ready, ns since the epoch; 0n while it runs. Such a pod is NOTREADY for good: its
   * task is deleted, but its network and containers stay until StopPodSandbox.
   */
  sandboxExitedAt: bigint;
}

interface RawPod {
  id: string;
  name: string;
  namespace: string;
  uid: string;
  attempt: number;
  config: Buffer;
  phase: PodPhase;
  created_at: string;
  runtime_handler: string;
  netns_path: string;
  ips: string;
  pod_dir: string;
  sandbox_exited_at: string;
}

export const podsMigration = `
  -- One row per pod sandbox (CRI RunPodSandbox).
  CREATE TABLE pods (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    namespace       TEXT NOT NULL,
    uid             TEXT NOT NULL,
    attempt         INTEGER NOT NULL,
    config          BLOB NOT NULL,            -- runtime.v1.PodSandboxConfig, protobuf
    phase           TEXT NOT NULL CHECK (phase IN ('creating', 'ready', 'stopped', 'removing')),
    created_at      TEXT NOT NULL,            -- ns since epoch
    runtime_handler TEXT NOT NULL,
    netns_path      TEXT NOT NULL DEFAULT '',
    ips             TEXT NOT NULL DEFAULT '[]',  -- JSON array, primary first
    pod_dir         TEXT NOT NULL DEFAULT '',
    UNIQUE (name, namespace, uid, attempt)
  );
`;

/** Migration 4: the sandbox process's own exit, kept so a restarted berthd still reports the pod NOTREADY. */
export const podsSandboxExitMigration = `
  ALTER TABLE pods ADD COLUMN sandbox_exited_at TEXT NOT NULL DEFAULT '0';  -- ns since epoch; '0' = not exited
`;

function toRow(r: RawPod): PodRow {
  return {
    id: r.id,
    name: r.name,
    namespace: r.namespace,
    uid: r.uid,
    attempt: r.attempt,
    config: r.config,
    phase: r.phase,
    createdAt: BigInt(r.created_at),
    runtimeHandler: r.runtime_handler,
    netnsPath: r.netns_path,
    ips: JSON.parse(r.ips) as string[],
    podDir: r.pod_dir,
    sandboxExitedAt: BigInt(r.sandbox_exited_at ?? "0"),
  };
}

function isUniqueViolation(err: unknown): boolean {
  return (
    (err as { code?: string }).code === "SQLITE_CONSTRAINT_UNIQUE" ||
    (err as { code?: string }).code === "SQLITE_CONSTRAINT_PRIMARYKEY"
  );
}

export class PodMetadata {
  /** Statements compiled once (db.ts statements()). */
  private readonly sql: (sql: string) => Statement;

  constructor(private readonly db: Db) {
    this.sql = statements(db);
  }

  /** Inserts a new pod; AlreadyExistsError naming the holder when the name is taken. */
  insert(p: PodRow): void {
    try {
      this.sql(
        `INSERT INTO pods (id, name, namespace, uid, attempt, config, phase, created_at, runtime_handler, netns_path, ips, pod_dir)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ).run(
        p.id,
        p.name,
        p.namespace,
        p.uid,
        p.attempt,
        p.config,
        p.phase,
        p.createdAt.toString(),
        p.runtimeHandler,
        p.netnsPath,
        JSON.stringify(p.ips),
        p.podDir,
      );
    } catch (err) {
      if (!isUniqueViolation(err)) throw err;
      const holder = this.sql(`SELECT id FROM pods WHERE name = ? AND namespace = ? AND uid = ? AND attempt = ?`).get(
        p.name,
        p.namespace,
        p.uid,
        p.attempt,
      ) as { id: string } | undefined;
      throw new AlreadyExistsError(
        `pod sandbox name "${p.name}_${p.namespace}_${p.uid}_${p.attempt}" is already used by pod ${holder?.id ?? p.id}: remove it first or use another attempt`,
      );
    }
  }

  get(id: string): PodRow | undefined {
    const r = this.sql(`SELECT * FROM pods WHERE id = ?`).get(id) as RawPod | undefined;
    return r ? toRow(r) : undefined;
  }

  list(): PodRow[] {
    return (this.sql(`SELECT * FROM pods ORDER BY created_at`).all() as RawPod[]).map(toRow);
  }

  /** Ids starting with `prefix` (short-id resolution). */
  idsWithPrefix(prefix: string): string[] {
    return (
      this.sql(`SELECT id FROM pods WHERE substr(id, 1, ?) = ?`).all(prefix.length, prefix) as { id: string }[]
    ).map((r) => r.id);
  }

  setPhase(id: string, phase: PodPhase): void {
    this.sql(`UPDATE pods SET phase = ? WHERE id = ?`).run(phase, id);
  }

  /** Records that the sandbox process exited by itself (see PodRow.sandboxExitedAt). */
  setSandboxExited(id: string, at: bigint): void {
    this.sql(`UPDATE pods SET sandbox_exited_at = ? WHERE id = ?`).run(at.toString(), id);
  }

  setNetwork(id: string, netnsPath: string, ips: string[]): void {
    this.sql(`UPDATE pods SET netns_path = ?, ips = ? WHERE id = ?`).run(netnsPath, JSON.stringify(ips), id);
  }

  delete(id: string): void {
    this.sql(`DELETE FROM pods WHERE id = ?`).run(id);
  }
}
