// Record keeping shared by the directory-based snapshotters (overlay, native): each snapshot
// is a directory <root>/snapshots/<id> plus a row in the metadata database. Directories are
// built under a temporary name and renamed into place inside the transaction that inserts
// the row, so a crash leaves at worst an orphan directory, which cleanup() removes.
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, renameSync } from "node:fs";
import { readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import type { Db } from "../metadata/db.js";
import { SnapshotMetadata, type SnapshotRow } from "../metadata/snapshots.js";
import { AlreadyExistsError, FailedPreconditionError, InvalidArgumentError, NotFoundError } from "../util/errors.js";
import type { Mount, SnapshotInfo, SnapshotKind, Snapshotter, StagedSnapshot, Usage } from "./types.js";
import { diskUsage } from "./usage.js";

function isUniqueViolation(err: unknown): boolean {
  return (err as { code?: string }).code === "SQLITE_CONSTRAINT_UNIQUE";
}

export abstract class DirSnapshotter implements Snapshotter {
  abstract readonly name: string;
  abstract readonly whiteouts: "overlay" | "native";
  protected readonly meta: SnapshotMetadata;
  protected readonly snapshotsDir: string;

  constructor(
    db: Db,
    readonly root: string,
    name: string,
  ) {
    this.meta = new SnapshotMetadata(db, name);
    this.snapshotsDir = join(root, "snapshots");
    mkdirSync(this.snapshotsDir, { recursive: true });
  }

  /** Fills the fresh directory `dir` for a new snapshot whose parent chain (nearest first) is `parents`. */
  protected abstract populate(dir: string, kind: SnapshotKind, parents: SnapshotRow[]): Promise<void>;
  protected abstract mountsOf(row: SnapshotRow, parents: SnapshotRow[]): Mount[];
  /** Where the snapshot's own files live inside its directory. */
  protected abstract layerDir(dir: string): string;

  protected dirOf(row: { id: number }): string {
    return join(this.snapshotsDir, String(row.id));
  }

  protected row(key: string): SnapshotRow {
    const r = this.meta.get(key);
    if (!r) throw new NotFoundError(`snapshot ${key} not found (${this.name})`);
    return r;
  }

  /** The committed ancestors of a snapshot, nearest first. */
  protected parentsOf(row: SnapshotRow): SnapshotRow[] {
    const out: SnapshotRow[] = [];
    for (let p = row.parent; p;) {
      const r = this.row(p);
      out.push(r);
      p = r.parent;
    }
    return out;
  }

  private info(r: SnapshotRow): SnapshotInfo {
    return { key: r.key, parent: r.parent ?? undefined, kind: r.kind, labels: r.labels, createdAt: r.createdAt };
  }

  stat(key: string): SnapshotInfo {
    return this.info(this.row(key));
  }

  exists(key: string): boolean {
    return this.meta.get(key) !== undefined;
  }

  list(): SnapshotInfo[] {
    return this.meta.list().map((r) => this.info(r));
  }

  private async create(
    kind: "active" | "view",
    key: string,
    parent: string | undefined,
    labels: Record<string, string>,
  ): Promise<Mount[]> {
    const staged = await this.stage(kind, key, parent, labels);
    try {
      return staged.commit();
    } catch (err) {
      await staged.discard();
      throw err;
    }
  }

  /**
   * A new snapshot made ready under a temporary name: commit() records it (its row inserted
   * and its directory renamed into place in one transaction, a savepoint when the caller's
   * transaction is open, so a record of the caller's can commit with it) and returns its
   * mounts; after a failed or no commit, discard() removes the temporary directory.
   */
  async stage(
    kind: "active" | "view",
    key: string,
    parent: string | undefined,
    labels: Record<string, string>,
  ): Promise<StagedSnapshot> {
    if (!key) throw new InvalidArgumentError("snapshot key must not be empty");
    if (this.meta.get(key)) throw new AlreadyExistsError(`snapshot ${key} already exists (${this.name})`);
    let parents: SnapshotRow[] = [];
    if (parent) {
      const p = this.row(parent);
      if (p.kind !== "committed") throw new FailedPreconditionError(`parent snapshot ${parent} is not committed`);
      parents = [p, ...this.parentsOf(p)];
    }
    const tmp = join(this.root, `new-${randomBytes(8).toString("hex")}`);
    mkdirSync(tmp); // the root exists (constructor): one syscall, not a thread-pool trip
    const discard = () => rm(tmp, { recursive: true, force: true });
    try {
      await this.populate(tmp, kind, parents);
    } catch (err) {
      await discard();
      throw err;
    }
    return {
      commit: () => {
        let placed: string | undefined;
        try {
          const id = this.meta.transaction(() => {
            const id = this.meta.insert(key, parent ?? null, kind, labels);
            const dir = this.dirOf({ id });
            this.moveOrphanAside(dir);
            renameSync(tmp, dir);
            placed = dir;
            return id;
          });
          placed = undefined; // recorded: the directory is the row's now
          return this.mountsOf({ ...this.row(key), id }, parents);
        } catch (err) {
          // The transaction did not commit (a full disk fails the COMMIT after the rename):
          // the directory goes back under its temporary name, for discard().
          if (placed) renameSync(placed, tmp);
          if (isUniqueViolation(err)) throw new AlreadyExistsError(`snapshot ${key} already exists (${this.name})`);
          throw err;
        }
      },
      discard,
    };
  }

  prepare(key: string, parent?: string, opts: { labels?: Record<string, string> } = {}): Promise<Mount[]> {
    return this.create("active", key, parent, opts.labels ?? {});
  }

  view(key: string, parent?: string, opts: { labels?: Record<string, string> } = {}): Promise<Mount[]> {
    return this.create("view", key, parent, opts.labels ?? {});
  }

  mounts(key: string): Mount[] {
    const r = this.row(key);
    if (r.kind === "committed")
      throw new FailedPreconditionError(`snapshot ${key} is committed; mount a view or prepare on it`);
    return this.mountsOf(r, this.parentsOf(r));
  }

  applyDir(key: string): string {
    const r = this.row(key);
    if (r.kind !== "active") throw new FailedPreconditionError(`snapshot ${key} is not active`);
    return this.layerDir(this.dirOf(r));
  }

  async commit(name: string, key: string, opts: { labels?: Record<string, string> } = {}): Promise<void> {
    const r = this.row(key);
    if (r.kind !== "active") throw new FailedPreconditionError(`snapshot ${key} is not active`);
    if (this.meta.get(name)) throw new AlreadyExistsError(`snapshot ${name} already exists (${this.name})`);
    const usage = await diskUsage(this.layerDir(this.dirOf(r)));
    try {
      this.meta.commit(key, name, usage, opts.labels);
    } catch (err) {
      if (isUniqueViolation(err)) throw new AlreadyExistsError(`snapshot ${name} already exists (${this.name})`);
      throw err;
    }
  }

  async remove(key: string): Promise<void> {
    await rm(this.detach(key), { recursive: true, force: true });
  }

  forget(key: string): () => string | undefined {
    const r = this.removable(key);
    this.meta.transaction(() => this.meta.delete(key));
    return () => {
      // Synchronously after the caller's commit: no insert can take the id (and its directory
      // name) meanwhile. A crash before it leaves a directory no row names: cleanup() at start.
      const doomed = join(this.root, `removed-${r.id}-${randomBytes(4).toString("hex")}`);
      try {
        renameSync(this.dirOf(r), doomed);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
        throw err;
      }
      return doomed;
    };
  }

  /** The row of `key`, which must have no children to be removed. */
  private removable(key: string): SnapshotRow {
    const r = this.row(key);
    const children = this.meta.children(key);
    if (children.length > 0) {
      throw new FailedPreconditionError(
        `snapshot ${key} has ${children.length} child snapshot(s) (${children[0]}, ...); remove them first`,
      );
    }
    return r;
  }

  detach(key: string): string {
    const r = this.removable(key);
    // Rename first (with the row deletion, atomically) so a crash mid-rm leaves only an orphan.
    const doomed = join(this.root, `removed-${r.id}-${randomBytes(4).toString("hex")}`);
    let moved = false;
    try {
      this.meta.transaction(() => {
        this.meta.delete(key);
        try {
          renameSync(this.dirOf(r), doomed);
          moved = true;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
        }
      });
    } catch (err) {
      // The row stays (its deletion did not commit): so does its directory.
      if (moved) renameSync(doomed, this.dirOf(r));
      throw err;
    }
    return doomed;
  }

  /**
   * A directory at a freshly inserted row's place belongs to no record: the insert that last
   * took this id was rolled back after its rename (a COMMIT that failed on a full disk, an
   * enclosing transaction that failed, or a crash before cleanup() ran). SQLite hands a
   * rolled-back id out again, and a rename onto a non-empty directory fails (ENOTEMPTY), so the
   * orphan is moved aside and deleted.
   */
  private moveOrphanAside(dir: string): void {
    if (!existsSync(dir)) return;
    const aside = join(this.root, `removed-orphan-${randomBytes(4).toString("hex")}`);
    renameSync(dir, aside);
    void rm(aside, { recursive: true, force: true }).catch(() => {}); // else cleanup() at the next start
  }

  async usage(key: string): Promise<Usage> {
    const r = this.row(key);
    if (r.kind === "committed" && r.size !== null && r.inodes !== null) return { size: r.size, inodes: r.inodes };
    return diskUsage(this.layerDir(this.dirOf(r)));
  }

  async cleanup(): Promise<void> {
    const known = new Set(this.meta.list().map((r) => String(r.id)));
    for (const name of await readdir(this.snapshotsDir)) {
      if (!known.has(name)) await rm(join(this.snapshotsDir, name), { recursive: true, force: true });
    }
    for (const name of await readdir(this.root)) {
      if (name.startsWith("new-") || name.startsWith("removed-"))
        await rm(join(this.root, name), { recursive: true, force: true });
    }
  }
}
