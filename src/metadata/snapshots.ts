// Snapshot records shared by the snapshotters: key -> (directory id, parent, kind).
import { statements, type Db, type Statement } from "./db.js";

export type SnapshotKind = "committed" | "active" | "view";

export interface SnapshotRow {
  /** names the snapshot's directory on disk */
  id: number;
  snapshotter: string;
  key: string;
  parent: string | null;
  kind: SnapshotKind;
  labels: Record<string, string>;
  size: number | null;
  inodes: number | null;
  createdAt: number;
}

interface Raw {
  id: number;
  snapshotter: string;
  key: string;
  parent: string | null;
  kind: SnapshotKind;
  labels: string;
  size: number | null;
  inodes: number | null;
  created_at: number;
}
const toRow = (r: Raw): SnapshotRow => ({
  id: r.id,
  snapshotter: r.snapshotter,
  key: r.key,
  parent: r.parent,
  kind: r.kind,
  labels: JSON.parse(r.labels) as Record<string, string>,
  size: r.size,
  inodes: r.inodes,
  createdAt: r.created_at,
});

export class SnapshotMetadata {
  /** Statements compiled once (db.ts statements()). */
  private readonly sql: (sql: string) => Statement;

  constructor(
    private readonly db: Db,
    readonly snapshotter: string,
  ) {
    this.sql = statements(db);
  }

  get(key: string): SnapshotRow | undefined {
    const r = this.sql(`SELECT * FROM snapshots WHERE snapshotter = ? AND key = ?`).get(this.snapshotter, key) as
      Raw | undefined;
    return r && toRow(r);
  }

  list(): SnapshotRow[] {
    return (this.sql(`SELECT * FROM snapshots WHERE snapshotter = ? ORDER BY id`).all(this.snapshotter) as Raw[]).map(
      toRow,
    );
  }

  children(key: string): string[] {
    return (
      this.sql(`SELECT key FROM snapshots WHERE snapshotter = ? AND parent = ?`).all(this.snapshotter, key) as {
        key: string;
      }[]
    ).map((r) => r.key);
  }

  /** Inserts a record and returns its directory id; throws on a duplicate key (UNIQUE). */
  insert(key: string, parent: string | null, kind: SnapshotKind, labels: Record<string, string>): number {
    const info = this.sql(
      `INSERT INTO snapshots (snapshotter, key, parent, kind, labels, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
    ).run(this.snapshotter, key, parent, kind, JSON.stringify(labels), Date.now());
    return Number(info.lastInsertRowid);
  }

  /**
   * Turns active snapshot `key` into committed snapshot `name`, keeping its directory id:
   * one UPDATE, so a crash leaves either the active or the committed record.
   */
  commit(key: string, name: string, usage: { size: number; inodes: number }, labels?: Record<string, string>): void {
    this.sql(
      `UPDATE snapshots SET key = ?, kind = 'committed', size = ?, inodes = ?, labels = coalesce(?, labels)
         WHERE snapshotter = ? AND key = ? AND kind = 'active'`,
    ).run(name, usage.size, usage.inodes, labels ? JSON.stringify(labels) : null, this.snapshotter, key);
  }

  delete(key: string): void {
    this.sql(`DELETE FROM snapshots WHERE snapshotter = ? AND key = ?`).run(this.snapshotter, key);
  }

  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }
}
