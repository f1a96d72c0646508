import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, renameSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CriLineSplitter, CriLogFile, rfc3339Nano, type LogStream } from "../../../../src/cri/io/cri-log.js";

function collect() {
  const records: { stream: LogStream; tag: string; msg: string }[] = [];
  return {
    records,
    sink: { write: (stream: LogStream, tag: "P" | "F", m: Buffer) => records.push({ stream, tag, msg: m.toString() }) },
  };
}

test("timestamps are RFC3339Nano with trailing zeros trimmed", () => {
  assert.equal(rfc3339Nano(1_700_000_000_123_456_789n), "2023-11-14T22:13:20.123456789Z");
  assert.equal(rfc3339Nano(1_700_000_000_120_000_000n), "2023-11-14T22:13:20.12Z");
  assert.equal(rfc3339Nano(1_700_000_000_000_000_000n), "2023-11-14T22:13:20Z");
});

test("lines split across chunks are joined; a trailing line without newline is partial", () => {
  const { records, sink } = collect();
  const s = new CriLineSplitter("stdout", sink, 8);
  s.push(Buffer.from("hel"));
  s.push(Buffer.from("lo\nwor"));
  s.push(Buffer.from("ld\n\nend"));
  s.end();
  assert.deepEqual(records, [
    { stream: "stdout", tag: "F", msg: "hello" },
    { stream: "stdout", tag: "F", msg: "world" },
    { stream: "stdout", tag: "F", msg: "" },
    { stream: "stdout", tag: "P", msg: "end" },
  ]);
});

test("a long line becomes P records ending with F, and reassembles exactly", () => {
  const { records, sink } = collect();
  const s = new CriLineSplitter("stderr", sink, 16 * 1024);
  const line = Buffer.alloc(1024 * 1024 + 5, "x");
  for (let i = 0; i < line.length; i += 4000) s.push(line.subarray(i, Math.min(i + 4000, line.length)));
  s.push(Buffer.from("\n"));
  assert.ok(records.length > 60);
  assert.ok(records.slice(0, -1).every((r) => r.tag === "P" && r.msg.length === 16 * 1024));
  assert.equal(records.at(-1)!.tag, "F");
  assert.equal(records.map((r) => r.msg).join(""), line.toString());
});

test("a line of exactly the maximum size is one F record", () => {
  const { records, sink } = collect();
  const s = new CriLineSplitter("stdout", sink, 4);
  s.push(Buffer.from("abcd"));
  s.push(Buffer.from("\nefghi\n"));
  assert.deepEqual(
    records.map((r) => `${r.tag}:${r.msg}`),
    ["F:abcd", "P:efgh", "F:i"],
  );
});

test("log file records keep order and survive a rotation by reopen", () => {
  const dir = mkdtempSync(join(tmpdir(), "berth-crilog-"));
  try {
    const path = join(dir, "0.log");
    let t = 1_700_000_000_000_000_000n;
    const file = new CriLogFile(path, () => (t += 1000n));
    const out = new CriLineSplitter("stdout", file);
    out.push(Buffer.from("one\ntw"));
    renameSync(path, path + ".1"); // kubelet rotates: rename, then ReopenContainerLog
    file.reopen();
    out.push(Buffer.from("o\nthree\n"));
    file.close();
    const before = readFileSync(path + ".1", "utf8");
    const after = readFileSync(path, "utf8");
    assert.match(before, /^2023-11-14T22:13:20\.000001Z stdout F one\n$/);
    assert.deepEqual(
      after
        .trim()
        .split("\n")
        .map((l) => l.split(" ").slice(1).join(" ")),
      ["stdout F two", "stdout F three"],
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
