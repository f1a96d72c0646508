// Garbage collection of what interrupted downloads leave: an ingest that got no data for
// longer than the stale bound is removed by gc(); a recent one (a pull that may come back to
// resume it) and a running one stay. Background GC requests coalesce.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readdir, rm, utimes } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { openDatabase } from "../../src/metadata/db.js";
import { ImageService } from "../../src/images/service.js";
import { sha256 } from "../helpers/images.js";

async function newService(t: { after(fn: () => Promise<void>): void }, staleIngestMs?: number) {
  const root = await mkdtemp(join(tmpdir(), "berth-gc-"));
  const db = openDatabase(join(root, "meta.db"));
  const svc = await ImageService.create({
    root,
    db,
    snapshotter: "native",
    registry: { configPath: undefined },
    staleIngestMs,
  });
  t.after(async () => {
    db.close();
    await rm(root, { recursive: true, force: true });
  });
  return svc;
}

/** Leaves an interrupted ingest of `data`: the source fails for good after `cut` bytes. */
async function interruptedIngest(svc: ImageService, data: Buffer, cut: number): Promise<string> {
  const digest = sha256(data);
  await assert.rejects(
    svc.content.ingest({ digest, size: data.length }, async () => ({
      offset: 0,
      stream: (async function* () {
        yield data.subarray(0, cut);
        throw Object.assign(new Error("gone for good"), { code: "EPROTO" });
      })(),
    })),
  );
  return digest;
}

test("gc removes interrupted ingests older than the stale bound and keeps recent ones", async (t) => {
  const svc = await newService(t, 24 * 3600_000);
  const old = await interruptedIngest(svc, randomBytes(10_000), 4000);
  const fresh = await interruptedIngest(svc, randomBytes(10_000), 5000);
  const ingestDir = join(svc.content.root, "ingest");
  assert.deepEqual((await readdir(ingestDir)).sort(), [old.slice(7), fresh.slice(7)].sort());
  // The old one last received data two days ago.
  const twoDaysAgo = new Date(Date.now() - 48 * 3600_000);
  await utimes(join(ingestDir, old.slice(7), "data"), twoDaysAgo, twoDaysAgo);

  const r = await svc.gc();
  assert.deepEqual(r.removedIngests, [old]);
  assert.deepEqual(await readdir(ingestDir), [fresh.slice(7)]);
  const left = await svc.content.ingests();
  assert.equal(left[0].offset, 5000, "the recent partial download is kept for a resume");
});

test("a restart prunes stale interrupted ingests and keeps recent ones for resuming", async (t) => {
  const svc = await newService(t);
  const old = await interruptedIngest(svc, randomBytes(10_000), 4000);
  const fresh = await interruptedIngest(svc, randomBytes(10_000), 5000);
  const ingestDir = join(svc.content.root, "ingest");
  const twoDaysAgo = new Date(Date.now() - 48 * 3600_000);
  await utimes(join(ingestDir, old.slice(7), "data"), twoDaysAgo, twoDaysAgo);
  // What berthd does when it starts again on the same root.
  await ImageService.create({ ...svc.opts });
  assert.deepEqual(await readdir(ingestDir), [fresh.slice(7)]);
});

test("a running ingest is never collected, however old its data looks", async (t) => {
  const svc = await newService(t, 0);
  const data = randomBytes(50_000);
  const digest = sha256(data);
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let started!: () => void;
  const isStarted = new Promise<void>((r) => (started = r));
  const ingest = svc.content.ingest({ digest, size: data.length }, async () => ({
    offset: 0,
    stream: (async function* () {
      yield data.subarray(0, 1000);
      started();
      await gate;
      yield data.subarray(1000);
    })(),
  }));
  await isStarted;
  assert.equal(svc.content.isIngesting(digest), true);
  const r = await svc.gc();
  assert.deepEqual(r.removedIngests, []);
  release();
  await ingest;
  assert.equal(await svc.content.has(digest), true);
  assert.deepEqual(await readdir(join(svc.content.root, "ingest")), []);
});

test("background GC requests made while one runs share the next collection", async (t) => {
  const svc = await newService(t);
  const results = await Promise.all([svc.requestGc(), svc.requestGc(), svc.requestGc()]);
  assert.ok(results.every((r) => r !== undefined));
  // The second and third waited for the first and then shared one run.
  assert.equal(results[1], results[2]);
  assert.notEqual(results[0], results[1]);
});
