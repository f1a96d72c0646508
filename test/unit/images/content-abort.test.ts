// Abandoned downloads in the content store (src/images/content-store.ts): a download whose
// only caller gives up midway is aborted and leaves no ingest; one that another caller still
// waits for carries on and commits; after an abort the same blob can be fetched again.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { after, test } from "node:test";
import { ContentStore, type BlobSource } from "../../../src/images/content-store.js";

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function store(): Promise<ContentStore> {
  const d = await mkdtemp(join(tmpdir(), "berth-content-abort-"));
  dirs.push(d);
  const s = new ContentStore(d);
  await s.init();
  return s;
}

const blob = Buffer.alloc(64 << 10, 7);
const expected = { digest: `sha256:${createHash("sha256").update(blob).digest("hex")}`, size: blob.length };

/**
 * A source that sends the first half of the blob, then nothing until `release()` sends the
 * rest (the registry that stops midway). `firstHalfSent` resolves once the half is out.
 */
function stallingSource() {
  const streams: PassThrough[] = [];
  let sent!: () => void;
  const firstHalfSent = new Promise<void>((r) => (sent = r));
  const source: BlobSource = async (offset) => {
    const s = new PassThrough();
    streams.push(s);
    s.write(blob.subarray(offset, blob.length / 2));
    sent();
    return { offset, stream: s };
  };
  return {
    source,
    firstHalfSent,
    streams,
    release: () => streams[streams.length - 1].end(blob.subarray(blob.length / 2)),
  };
}

/** Resolves once the ingest's data file holds the first half (written, not just received). */
async function halfOnDisk(s: ContentStore): Promise<void> {
  for (;;) {
    const i = (await s.ingests()).find((x) => x.digest === expected.digest);
    if (i && i.offset === blob.length / 2) return;
    await new Promise((r) => setImmediate(r));
  }
}

test("the only caller cancelling mid-download removes the ingest; fetching again works", async () => {
  const s = await store();
  const src = stallingSource();
  const ac = new AbortController();
  const p = s.ingest(expected, src.source, { signal: ac.signal });
  await src.firstHalfSent;
  await halfOnDisk(s);
  ac.abort(new Error("call cancelled by the client"));
  await assert.rejects(p, { kind: "Canceled" });
  assert.equal(src.streams[0].destroyed, true, "the stalled body was torn down");
  assert.deepEqual(await readdir(s.ingestDir), [], "no ingest left");
  assert.equal(await s.has(expected.digest), false);
  assert.equal(s.isIngesting(expected.digest), false);

  const again = stallingSource();
  const q = s.ingest(expected, again.source);
  await again.firstHalfSent;
  again.release();
  await q;
  assert.equal(again.streams.length, 1);
  assert.deepEqual(await s.read(expected.digest), blob);
  assert.deepEqual(await readdir(s.ingestDir), []);
});

test("a download another caller still waits for carries on when one caller cancels", async () => {
  const s = await store();
  const src = stallingSource();
  const ac = new AbortController();
  const a = s.ingest(expected, src.source, { signal: ac.signal });
  const b = s.ingest(expected, src.source, { signal: new AbortController().signal });
  await src.firstHalfSent;
  ac.abort();
  await assert.rejects(a, { kind: "Canceled" });
  src.release();
  await b;
  assert.equal(src.streams.length, 1, "one request, never interrupted");
  assert.deepEqual(await s.read(expected.digest), blob);
  assert.deepEqual(await readdir(s.ingestDir), []);
});
