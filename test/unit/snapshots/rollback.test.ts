// A snapshot's row and its directory change together: when the transaction that records them
// does not commit (SQLite fails the COMMIT on a full disk after the rename has happened; a
// fault this test injects, since filling a disk is the reliability suite's job), the directory
// follows the row back, and an id handed out again finds no stale directory in its way.
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { openDatabase } from "../../../src/metadata/db.js";
import { NativeSnapshotter } from "../../../src/snapshots/native.js";

type Tx = <T>(fn: () => T) => T;

function setup() {
  const dir = mkdtempSync(join(tmpdir(), "berth-snap-rollback-"));
  const db = openDatabase(join(dir, "meta.db"));
  const snap = new NativeSnapshotter(db, join(dir, "snap"));
  const meta = (snap as unknown as { meta: { transaction: Tx } }).meta;
  const real = meta.transaction.bind(meta);
  /** The next transaction runs its body, then fails as a full disk fails its COMMIT. */
  const failNextCommit = () => {
    meta.transaction = (<T>(fn: () => T): T => {
      meta.transaction = real;
      return db.transaction(() => {
        fn();
        throw Object.assign(new Error("database or disk is full"), { code: "SQLITE_FULL" });
      })() as T;
    }) as Tx;
  };
  const leftovers = () => readdirSync(join(dir, "snap")).filter((n) => n !== "snapshots");
  const done = () => {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  };
  return { snap, failNextCommit, leftovers, snapshots: join(dir, "snap", "snapshots"), done };
}

test("a prepare whose commit fails leaves no directory, and the next prepare takes the id", async () => {
  const t = setup();
  try {
    t.failNextCommit();
    await assert.rejects(t.snap.prepare("a"), /disk is full/);
    assert.equal(t.snap.exists("a"), false);
    assert.deepEqual(readdirSync(t.snapshots), []);
    assert.deepEqual(t.leftovers(), []);
    await t.snap.prepare("a");
    assert.deepEqual(readdirSync(t.snapshots), ["1"]);
  } finally {
    t.done();
  }
});

test("a directory a rolled-back insert left (e.g. a crash) is moved aside when its id comes again", async () => {
  const t = setup();
  try {
    // The first insert takes id 1; a crash between an earlier insert's rename and its commit
    // left a directory there (cleanup() at start would remove it; here it has not run).
    mkdirSync(join(t.snapshots, "1", "fs"), { recursive: true });
    writeFileSync(join(t.snapshots, "1", "fs", "stale"), "x");
    await t.snap.prepare("b");
    assert.deepEqual(readdirSync(t.snapshots), ["1"]);
    assert.deepEqual(readdirSync(join(t.snapshots, "1", "fs")), [], "b got a fresh directory");
  } finally {
    t.done();
  }
});

test("a remove whose commit fails keeps the row and its directory", async () => {
  const t = setup();
  try {
    await t.snap.prepare("a");
    t.failNextCommit();
    assert.throws(() => t.snap.detach("a"), /disk is full/);
    assert.equal(t.snap.exists("a"), true);
    assert.ok(existsSync(join(t.snapshots, "1", "fs")), "the directory is back where the row says");
    await t.snap.remove("a");
    assert.deepEqual(readdirSync(t.snapshots), []);
  } finally {
    t.done();
  }
});
