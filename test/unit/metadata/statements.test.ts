// The metadata tables' statements are compiled once per connection (src/metadata/db.ts
// statements()) and stay right across schema changes and transactions.
import assert from "node:assert/strict";
import { test } from "node:test";
import { openDatabase, statements } from "../../../src/metadata/db.js";
import { PodMetadata } from "../../../src/metadata/pods.js";

test("one statement per SQL text and connection", () => {
  const a = openDatabase(":memory:");
  const b = openDatabase(":memory:");
  try {
    const sql = "SELECT count(*) AS n FROM pods";
    assert.equal(statements(a)(sql), statements(a)(sql));
    assert.notEqual(statements(a)(sql), statements(b)(sql));
  } finally {
    a.close();
    b.close();
  }
});

test("a kept statement sees a column added after it was compiled", () => {
  const db = openDatabase(":memory:");
  try {
    const sql = statements(db);
    db.exec("CREATE TABLE t (a INTEGER)");
    db.exec("INSERT INTO t VALUES (1)");
    const all = sql("SELECT * FROM t");
    assert.deepEqual(all.all(), [{ a: 1 }]);
    db.exec("ALTER TABLE t ADD COLUMN b TEXT NOT NULL DEFAULT 'x'");
    assert.deepEqual(sql("SELECT * FROM t").all(), [{ a: 1, b: "x" }]);
  } finally {
    db.close();
  }
});

test("the table classes work through kept statements, in and out of transactions", () => {
  const db = openDatabase(":memory:");
  try {
    const pods = new PodMetadata(db);
    const row = (i: number) => ({
      id: `p${i}`,
      name: `n${i}`,
      namespace: "ns",
      uid: "u",
      attempt: 0,
      config: Buffer.alloc(0),
      phase: "creating" as const,
      createdAt: BigInt(i),
      runtimeHandler: "",
      netnsPath: "",
      ips: [],
      podDir: "",
      sandboxExitedAt: 0n,
    });
    for (let i = 0; i < 3; i++) pods.insert(row(i));
    db.transaction(() => pods.setPhase("p1", "ready"))();
    assert.throws(() => pods.insert({ ...row(9), name: "n2" }), /already used by pod p2/);
    assert.deepEqual(
      pods.list().map((p) => [p.id, p.phase]),
      [
        ["p0", "creating"],
        ["p1", "ready"],
        ["p2", "creating"],
      ],
    );
    assert.equal(new PodMetadata(db).get("p1")?.phase, "ready");
  } finally {
    db.close();
  }
});
