// Leases: named holds on content blobs and snapshots that garbage collection must keep.
// A pull takes one for everything it writes until the image record exists; the runtime can
// take one for a container's snapshot. Expired leases are ignored (and pruned) by GC.
//
// A lease's writes are committed unsynced (db.ts unsyncedTransaction): a lease only matters
// to a collection in this berthd while the pull that holds it runs, and the WAL survives a
// crash of berthd. A power cut may lose a lease (and what it held: the image was not recorded,
// so its pull had not returned, and a collection may take those blobs), or the deletion of
// one (it then holds its blobs until it expires). The pull's synced image commit syncs the
// lease writes before it with it. A pull had 5 synced lease commits (create, manifest,
// config, layer, delete) on top of its snapshot and image commits.
import { randomUUID } from "node:crypto";
import { statements, unsyncedTransaction, type Db, type Statement } from "./db.js";

export interface LeaseResource {
  /** "content" for a blob digest, "snapshot/<snapshotter>" for a snapshot key */
  type: string;
  resource: string;
}

export class LeaseMetadata {
  /** Statements compiled once (db.ts statements()). */
  private readonly sql: (sql: string) => Statement;

  constructor(private readonly db: Db) {
    this.sql = statements(db);
  }

  create(opts: { id?: string; expiresInMs?: number; labels?: Record<string, string> } = {}): string {
    const id = opts.id ?? randomUUID();
    const now = Date.now();
    unsyncedTransaction(this.db, () =>
      this.sql(`INSERT INTO leases (id, created_at, expires_at, labels) VALUES (?, ?, ?, ?)`).run(
        id,
        now,
        opts.expiresInMs === undefined ? null : now + opts.expiresInMs,
        JSON.stringify(opts.labels ?? {}),
      ),
    );
    return id;
  }

  addResource(leaseId: string, r: LeaseResource): void {
    this.addResources(leaseId, [r]);
  }

  /** Adds several resources in one commit. */
  addResources(leaseId: string, rs: LeaseResource[]): void {
    const add = this.sql(`INSERT OR IGNORE INTO lease_resources (lease_id, type, resource) VALUES (?, ?, ?)`);
    unsyncedTransaction(this.db, () => {
      for (const r of rs) add.run(leaseId, r.type, r.resource);
    });
  }

  removeResource(leaseId: string, r: LeaseResource): void {
    this.sql(`DELETE FROM lease_resources WHERE lease_id = ? AND type = ? AND resource = ?`).run(
      leaseId,
      r.type,
      r.resource,
    );
  }

  delete(id: string): void {
    unsyncedTransaction(this.db, () => this.sql(`DELETE FROM leases WHERE id = ?`).run(id));
  }

  list(): { id: string; createdAt: number; expiresAt: number | null }[] {
    const rows = this.sql(`SELECT id, created_at, expires_at FROM leases ORDER BY created_at`).all() as {
      id: string;
      created_at: number;
      expires_at: number | null;
    }[];
    return rows.map((r) => ({ id: r.id, createdAt: r.created_at, expiresAt: r.expires_at }));
  }

  /** Deletes expired leases, then returns the resources held by the live ones. */
  liveResources(now = Date.now()): LeaseResource[] {
    return this.db.transaction(() => {
      this.sql(`DELETE FROM leases WHERE expires_at IS NOT NULL AND expires_at <= ?`).run(now);
      return this.sql(`SELECT DISTINCT type, resource FROM lease_resources`).all() as LeaseResource[];
    })();
  }
}
