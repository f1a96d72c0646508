// The metadata database: one SQLite file holding every durable fact berth keeps (DESIGN.md
// principle 2). Schema changes are an ordered, append-only list of migrations; the applied
// version is SQLite's `user_version`, so opening an old database brings it up to date in one
// transaction per step and a crash mid-migration leaves the previous version intact.
import Database from "better-sqlite3";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { containersMigration } from "./containers.js";
import { podsMigration, podsSandboxExitMigration } from "./pods.js";

export type Db = Database.Database;
export type Statement = Database.Statement;

const statementCaches = new WeakMap<Db, Map<string, Statement>>();

/**
 * `db`'s statements by SQL text, each compiled on first use and kept. better-sqlite3's
 * prepare() compiles anew on every call (tens of µs, more than running a primary-key read),
 * and berthd's reads run the same few statements over and over. Every table class over the
 * same connection shares one cache; SQLite recompiles a kept statement itself when the
 * schema changes (a migration), so keeping them is safe.
 */
export function statements(db: Db): (sql: string) => Statement {
  let cache = statementCaches.get(db);
  if (!cache) statementCaches.set(db, (cache = new Map()));
  const c = cache;
  return (sql) => {
    let s = c.get(sql);
    if (!s) c.set(sql, (s = db.prepare(sql)));
    return s;
  };
}

export interface Migration {
  /** 1, 2, 3, ... in order; never renumber or edit a released migration, append a new one. */
  version: number;
  /** what it adds, for logs */
  name: string;
  up: (db: Db) => void;
}

/**
 * All migrations, in order. To add tables (pods, containers, ...) append a new entry with the
 * next version number; never change an entry that has shipped.
 */
export const migrations: Migration[] = [
  {
    version: 1,
    name: "images",
    up: (db) =>
      db.exec(`
        -- One row per image, keyed by its config digest (the image ID CRI reports).
        CREATE TABLE images (
          id              TEXT PRIMARY KEY,      -- "sha256:<config hex>"
          manifest_digest TEXT NOT NULL,         -- the platform manifest the layers came from
          manifest_media_type TEXT NOT NULL,
          chain_id        TEXT NOT NULL,         -- chain ID of the top layer = committed snapshot key
          snapshotter     TEXT NOT NULL,         -- which snapshotter holds the unpacked layers
          size            INTEGER NOT NULL,      -- bytes of manifest + config + compressed layers
          labels          TEXT NOT NULL DEFAULT '{}',  -- JSON object
          created_at      INTEGER NOT NULL       -- ms since epoch, when first stored
        );
        -- Names pointing at an image: "docker.io/library/busybox:latest" (tag) or
        -- "docker.io/library/busybox@sha256:..." (digest). Each name keeps the digest it resolved to
        -- (manifest or index), from which RepoDigests are computed.
        CREATE TABLE image_names (
          name              TEXT PRIMARY KEY,
          image_id          TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
          target_digest     TEXT NOT NULL,
          target_media_type TEXT NOT NULL,
          created_at        INTEGER NOT NULL
        );
        CREATE INDEX image_names_by_image ON image_names(image_id);
        -- Every content-store blob an image needs (index, manifest, config, layers): GC roots.
        CREATE TABLE image_blobs (
          image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
          digest   TEXT NOT NULL,
          PRIMARY KEY (image_id, digest)
        );
        CREATE INDEX image_blobs_by_digest ON image_blobs(digest);
      `),
  },
  {
    version: 2,
    name: "snapshots and leases",
    up: (db) =>
      db.exec(`
        -- Snapshots of every snapshotter. id names the directory on disk; key is the
        -- chain ID for committed layers and a caller-chosen key for active/view snapshots.
        CREATE TABLE snapshots (
          id          INTEGER PRIMARY KEY AUTOINCREMENT,
          snapshotter TEXT NOT NULL,
          key         TEXT NOT NULL,
          parent      TEXT,                       -- key of the parent (committed) snapshot
          kind        TEXT NOT NULL CHECK (kind IN ('committed', 'active', 'view')),
          labels      TEXT NOT NULL DEFAULT '{}',
          size        INTEGER,                    -- bytes, measured at commit
          inodes      INTEGER,                    -- inodes, measured at commit
          created_at  INTEGER NOT NULL,
          UNIQUE (snapshotter, key)
        );
        CREATE INDEX snapshots_by_parent ON snapshots(snapshotter, parent);
        -- Leases protect resources from GC while something (a pull, a container) uses them.
        CREATE TABLE leases (
          id         TEXT PRIMARY KEY,
          created_at INTEGER NOT NULL,
          expires_at INTEGER,                       -- ms since epoch; NULL = until deleted
          labels     TEXT NOT NULL DEFAULT '{}'
        );
        CREATE TABLE lease_resources (
          lease_id TEXT NOT NULL REFERENCES leases(id) ON DELETE CASCADE,
          type     TEXT NOT NULL,                   -- 'content' or 'snapshot/<snapshotter>'
          resource TEXT NOT NULL,                   -- digest or snapshot key
          PRIMARY KEY (lease_id, type, resource)
        );
      `),
  },
  {
    version: 3,
    name: "pods, containers and shim records",
    up: (db) => db.exec(podsMigration + containersMigration),
  },
  {
    version: 4,
    name: "pod sandbox exit",
    up: (db) => db.exec(podsSandboxExitMigration),
  },
];

/**
 * Runs `fn` in one transaction whose commit is not synced by itself (synchronous=NORMAL for
 * that commit only; WAL mode): it is written to the WAL, so it survives a crash of berthd, and
 * the next synced commit syncs it too (the WAL is synced in order). A power cut before that
 * may lose it. Only for a step that a synced commit of the same operation always follows, and
 * whose loss at a power cut leaves nothing that recovery and the start-up sweeps do not handle.
 * Inside another transaction, that one's commit decides.
 */
export function unsyncedTransaction<T>(db: Db, fn: () => T): T {
  if (db.inTransaction) return db.transaction(fn)();
  const sql = statements(db);
  const level = sql("PRAGMA synchronous").pluck().get() as number;
  sql("PRAGMA synchronous = NORMAL").run();
  try {
    return db.transaction(fn)();
  } finally {
    sql(`PRAGMA synchronous = ${level}`).run();
  }
}

/** Opens (creating if needed) the database at `path` and applies pending migrations. ":memory:" works for tests. */
export function openDatabase(path: string, list: Migration[] = migrations): Db {
  if (path !== ":memory:") mkdirSync(dirname(path), { recursive: true });
  const db = new Database(path);
  // WAL: readers never block the writer; synchronous=FULL because every commit must survive a power cut.
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = FULL");
  db.pragma("foreign_keys = ON");
  db.pragma("busy_timeout = 5000");
  migrate(db, list);
  return db;
}

/** Applies the migrations newer than the database's user_version, each in its own transaction. */
export function migrate(db: Db, list: Migration[] = migrations): void {
  for (let i = 0; i < list.length; i++) {
    if (list[i].version !== i + 1) throw new Error(`migration #${i} has version ${list[i].version}, expected ${i + 1}`);
  }
  const current = db.pragma("user_version", { simple: true }) as number;
  if (current > list.length) {
    throw new Error(`metadata database is at schema version ${current}, newer than this berth (${list.length})`);
  }
  for (const m of list.slice(current)) {
    db.transaction(() => {
      m.up(db);
      db.pragma(`user_version = ${m.version}`);
    })();
  }
}
