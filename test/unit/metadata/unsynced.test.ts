// unsyncedTransaction (src/metadata/db.ts): one commit without its own sync, the connection's
// sync level back as it was afterwards (even when the transaction throws), and inside another
// transaction simply part of it.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, test } from "node:test";
import { type Db, openDatabase, unsyncedTransaction } from "../../../src/metadata/db.js";

let dir: string;
let db: Db;
const FULL = 2;
const level = () => db.pragma("synchronous", { simple: true }) as number;
const count = () => (db.prepare("SELECT count(*) AS n FROM t").get() as { n: number }).n;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "berth-unsynced-"));
  db = openDatabase(join(dir, "m.db"));
  db.exec("CREATE TABLE t (v TEXT)");
});
afterEach(() => {
  db.close();
  rmSync(dir, { recursive: true, force: true });
});

test("commits, and the connection syncs every later commit again", () => {
  assert.equal(level(), FULL);
  assert.equal(
    unsyncedTransaction(db, () => db.prepare("INSERT INTO t VALUES ('a')").run().changes),
    1,
  );
  assert.equal(count(), 1);
  assert.equal(level(), FULL);
});

test("a throwing transaction rolls back and still restores the sync level", () => {
  assert.throws(
    () =>
      unsyncedTransaction(db, () => {
        db.prepare("INSERT INTO t VALUES ('a')").run();
        throw new Error("boom");
      }),
    /boom/,
  );
  assert.equal(count(), 0);
  assert.equal(level(), FULL);
});

test("inside another transaction it is part of that one", () => {
  assert.throws(() =>
    db.transaction(() => {
      unsyncedTransaction(db, () => db.prepare("INSERT INTO t VALUES ('a')").run());
      throw new Error("outer fails");
    })(),
  );
  assert.equal(count(), 0);
  assert.equal(level(), FULL);
});
