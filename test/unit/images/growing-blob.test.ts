// Reading a blob while the content store downloads it (src/images/growing-blob.ts): the
// reader follows the real ingest of a ContentStore fed by a source the test controls, and
// gives out exactly the blob's bytes, across a restart from 0 and a blob already stored; it
// ends with the download's error when the download fails.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { after, test } from "node:test";
import {
  ContentStore,
  DigestMismatchError,
  type BlobSource,
  type IngestOptions,
} from "../../../src/images/content-store.js";
import { GrowingBlobReader } from "../../../src/images/growing-blob.js";

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function store(): Promise<ContentStore> {
  const d = await mkdtemp(join(tmpdir(), "berth-growing-blob-"));
  dirs.push(d);
  const s = new ContentStore(d);
  await s.init();
  return s;
}

const blob = randomBytes(3 << 20);
const expected = { digest: `sha256:${createHash("sha256").update(blob).digest("hex")}`, size: blob.length };

function readerFor(s: ContentStore, digest = expected.digest, size = expected.size): GrowingBlobReader {
  return new GrowingBlobReader({ ingest: s.ingestDataPath(digest), blob: s.path(digest) }, size);
}

/** Reads from `r` until `n` bytes in all have come (or the stream ends). */
async function take(r: GrowingBlobReader, got: Buffer[], n: number): Promise<void> {
  let have = got.reduce((a, b) => a + b.length, 0);
  while (have < n) {
    const chunk = r.read() as Buffer | null;
    if (chunk) {
      got.push(chunk);
      have += chunk.length;
      continue;
    }
    if (r.readableEnded || r.destroyed) return;
    await new Promise((res) => {
      r.once("readable", res);
      r.once("end", res);
      r.once("close", res);
    });
  }
}

/**
 * A download the test feeds: each request's body is a PassThrough the test writes; the
 * request's offset is what `answerAt` says (the asked one, or 0 for a server ignoring Range).
 */
function feed(answerAt = (_i: number, asked: number) => asked) {
  const bodies: { asked: number; body: PassThrough }[] = [];
  let opened: () => void = () => {};
  const source: BlobSource = async (asked) => {
    const body = new PassThrough();
    const i = bodies.push({ asked, body }) - 1;
    opened();
    return { offset: answerAt(i, asked), stream: body };
  };
  const request = (i: number) =>
    bodies[i] ? Promise.resolve(bodies[i]) : new Promise<void>((r) => (opened = r)).then(() => bodies[i]!);
  return { source, request };
}

/** A reader following the ingest of `expected` from `f`, told when the download ends. */
function following(s: ContentStore, f: ReturnType<typeof feed>, opts: IngestOptions = {}) {
  const r = readerFor(s);
  const done = s.ingest(expected, f.source, { ...opts, observer: r });
  done.then(
    () => r.complete(),
    (e: unknown) => r.fail(e),
  );
  return { r, done };
}

test("the reader gives out each part as the download writes it, then the whole blob", async () => {
  const s = await store();
  const f = feed();
  const { r, done } = following(s, f);
  const got: Buffer[] = [];
  const { body } = await f.request(0);
  // The first MiB only: the reader has it while the download waits for more.
  body.write(blob.subarray(0, 1 << 20));
  await take(r, got, 1 << 20);
  assert.deepEqual(Buffer.concat(got), blob.subarray(0, 1 << 20));
  assert.equal(s.isIngesting(expected.digest), true, "read while the download still runs");
  body.end(blob.subarray(1 << 20));
  await done;
  await take(r, got, blob.length);
  assert.deepEqual(Buffer.concat(got), blob);
  await new Promise((res) => r.once("end", res).resume());
});

test("a download that starts over from 0 (the Range ignored) still reads as the blob", async () => {
  const s = await store();
  const f = feed((i, asked) => (i === 0 ? asked : 0));
  const { r, done } = following(s, f, { retry: { attempts: 3, baseDelayMs: 1, maxDelayMs: 1 } });
  const got: Buffer[] = [];
  const first = await f.request(0);
  first.body.write(blob.subarray(0, 2 << 20));
  await take(r, got, 1 << 20);
  // The connection drops; the retry asks for a Range and the server sends the whole blob again.
  first.body.destroy(Object.assign(new Error("reset"), { code: "ECONNRESET" }));
  const second = await f.request(1);
  assert.ok(second.asked > 0, "the retry asked to resume");
  // The source answered at offset 0: the store truncates the file and writes it again.
  second.body.end(blob);
  await done;
  await take(r, got, blob.length);
  assert.deepEqual(Buffer.concat(got), blob);
});

test("a failed download ends the reader with the download's error and leaves no file open", async () => {
  const s = await store();
  const f = feed();
  const { r, done } = following(s, f);
  const got: Buffer[] = [];
  const { body } = await f.request(0);
  const bad = Buffer.from(blob);
  bad[bad.length - 1] ^= 0xff;
  body.write(bad.subarray(0, 1 << 20));
  await take(r, got, 1 << 20);
  const errored = new Promise<Error>((res) => r.once("error", res));
  const closed = new Promise((res) => r.once("close", res));
  body.end(bad.subarray(1 << 20));
  await assert.rejects(done, DigestMismatchError);
  assert.ok((await errored) instanceof DigestMismatchError);
  await closed;
  const fds = await readdir("/proc/self/fd");
  const open = await Promise.all(
    fds.map((fd) => import("node:fs/promises").then((m) => m.readlink(`/proc/self/fd/${fd}`).catch(() => ""))),
  );
  assert.deepEqual(
    open.filter((p) => p.includes(s.root)),
    [],
    "no descriptor of the ingest left open",
  );
  assert.deepEqual(await readdir(s.ingestDir), []);
});

test("a blob already in the store is read whole once the ingest completes", async () => {
  const s = await store();
  await s.ingest(expected, async () => ({ offset: 0, stream: [blob] }));
  const r = readerFor(s);
  // The second ingest finds the blob committed: no transfer, no progress, only completion.
  await s.ingest(expected, async () => assert.fail("no download for a stored blob"), { observer: r });
  r.complete();
  const got: Buffer[] = [];
  await take(r, got, blob.length);
  assert.deepEqual(Buffer.concat(got), blob);
});

test("the reader never reads past the offset the download acknowledged", async () => {
  // The store acknowledges an offset only once the bytes before it are written; bytes past it
  // may be half written. Here they are a stand-in that must not come out.
  const s = await store();
  const data = Buffer.from("AAAABBBB");
  const small = { digest: `sha256:${createHash("sha256").update(data).digest("hex")}`, size: data.length };
  await import("node:fs/promises").then((m) => m.mkdir(join(s.ingestDir, small.digest.slice(7)), { recursive: true }));
  await writeFile(s.ingestDataPath(small.digest), "AAAAXXXX");
  const r = readerFor(s, small.digest, small.size);
  const h = r.begin("blob", 0);
  h.progress(4);
  const got: Buffer[] = [];
  await take(r, got, 4);
  // Let the reader run on: with nothing more acknowledged it reads nothing more.
  for (let i = 0; i < 20; i++) await new Promise((res) => setImmediate(res));
  assert.equal(r.read(), null);
  assert.deepEqual(Buffer.concat(got).toString(), "AAAA");
  await writeFile(s.ingestDataPath(small.digest), data);
  h.progress(8);
  await take(r, got, 8);
  assert.equal(Buffer.concat(got).toString(), "AAAABBBB");
  r.destroy();
});

test("an unread reader whose download fails does not take the process down", async () => {
  const s = await store();
  const r = readerFor(s);
  const closed = new Promise((res) => r.once("close", res));
  r.fail(new Error("download failed"));
  await closed;
  assert.equal(r.destroyed, true);
});
