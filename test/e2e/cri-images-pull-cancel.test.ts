// PullImage that is given up on, end to end through berthd's CRI socket: a client cancelling
// (or its deadline passing) while a layer is half-way through, two callers of one pull of
// which one gives up, and a registry that stops sending mid-blob under a short
// image_pull_progress_timeout. The registry is Debian's docker-registry behind the test proxy,
// which holds a blob's body back after its first MiB: the stall a real registry cannot be made
// to do on demand. After each, nothing of the pull may be left: no ingest, no blob, no lease.
// Also: ImageSpec.runtime_handler is accepted on every image call, as containerd does.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtemp, readdir, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import Database from "better-sqlite3";
import { PullImageRequest, type PullImageResponse } from "../../src/gen/cri/runtime/v1/api.js";
import { startDaemon, type TestDaemon } from "../helpers/daemon.js";
import {
  startProxy,
  startRegistry,
  type ProxyRequest,
  type TestProxy,
  type TestRegistry,
} from "../helpers/registry.js";
import { buildImage, makeLayer, pushLayout, writeOciLayout } from "../helpers/images.js";
import { until } from "../helpers/cri.js";

const MiB = 1 << 20;
let reg: TestRegistry;
let proxy: TestProxy;
let work: string;
/** three images, each with a 4 MiB layer of its own (incompressible) and a small one */
const images: Record<"cancel" | "shared" | "stall", { id: string; big: string; ref: string }> = {
  cancel: { id: "", big: "", ref: "" },
  shared: { id: "", big: "", ref: "" },
  stall: { id: "", big: "", ref: "" },
};
let small: { ref: string; id: string };

before(async () => {
  work = await mkdtemp(join(tmpdir(), "berth-pull-cancel-"));
  reg = await startRegistry();
  proxy = await startProxy(reg.host);
  const layout = join(work, "layout");
  const tiny = await makeLayer([{ name: "etc/motd", content: "hi\n" }]);
  const entries: { tag: string; image: ReturnType<typeof buildImage> }[] = [];
  for (const name of Object.keys(images) as (keyof typeof images)[]) {
    const big = await makeLayer([{ name: "data.bin", content: randomBytes(4 * MiB) }]);
    const image = buildImage([tiny, big]);
    images[name] = { id: image.config.digest, big: big.digest, ref: `${proxy.host}/test/${name}:1` };
    entries.push({ tag: name, image });
  }
  const smallImage = buildImage([tiny]);
  small = { ref: `${proxy.host}/test/small:1`, id: smallImage.config.digest };
  entries.push({ tag: "small", image: smallImage });
  await writeOciLayout(layout, entries);
  for (const e of entries) await pushLayout(layout, e.tag, `${reg.host}/test/${e.tag}:1`);
});

after(async () => {
  try {
    await proxy?.stop();
  } finally {
    await reg?.stop();
    await rm(work, { recursive: true, force: true });
  }
});

/** A PullImage the test can cancel. */
function startPull(d: TestDaemon, image: string, deadlineMs = 120_000) {
  let call!: grpc.ClientUnaryCall;
  const result = new Promise<PullImageResponse>((resolve, reject) => {
    call = d.image.pullImage(
      PullImageRequest.fromPartial({ image: { image } }),
      new grpc.Metadata(),
      { deadline: Date.now() + deadlineMs },
      (err, res) => (err ? reject(err) : resolve(res!)),
    );
  });
  result.catch(() => {});
  return { call, result };
}

/**
 * Resolves with the next proxy request for `digest` that `event` ("stalled": its body is held
 * back; "abandoned": berthd hung up before its end) happens to. Call it before the pull.
 */
function next(event: "stalled" | "abandoned", digest: string): Promise<ProxyRequest> {
  let timer: NodeJS.Timeout | undefined;
  const p = new Promise<ProxyRequest>((resolve, reject) => {
    const on = (r: ProxyRequest) => {
      if (!r.path.includes(digest)) return;
      proxy.events.off(event, on);
      clearTimeout(timer);
      resolve(r);
    };
    proxy.events.on(event, on);
    // A bound on how long the test waits, not on how fast berthd is.
    timer = setTimeout(() => {
      proxy.events.off(event, on);
      reject(new Error(`the blob ${digest} was never ${event}`));
    }, 90_000);
    timer.unref();
  });
  p.catch(() => {});
  return p;
}

const contentDir = (d: TestDaemon) => join(d.root, "content");
const ingestData = (d: TestDaemon, digest: string) => join(contentDir(d), "ingest", digest.slice(7), "data");
const ingests = (d: TestDaemon) => readdir(join(contentDir(d), "ingest"));
const blobs = (d: TestDaemon) => readdir(join(contentDir(d), "blobs", "sha256"));

/** Leases in berthd's metadata store (read-only, beside the running daemon). */
function leaseCount(d: TestDaemon): number {
  const db = new Database(join(d.root, "metadata.db"), { readonly: true, fileMustExist: true });
  try {
    return (db.prepare("SELECT count(*) AS n FROM leases").get() as { n: number }).n;
  } finally {
    db.close();
  }
}

/** Waits until the half-held blob's first MiB is on disk in berthd's ingest. */
async function partialOnDisk(d: TestDaemon, digest: string): Promise<number> {
  return until(
    () =>
      stat(ingestData(d, digest)).then(
        (s) => (s.size >= MiB ? s.size : 0),
        () => 0,
      ),
    `the first MiB of ${digest} in berthd's ingest`,
    60_000,
  );
}

/** Everything the given-up pull wrote is gone: ingests now, its committed blobs once the GC it asked for ran. */
async function nothingLeft(d: TestDaemon, what: string): Promise<void> {
  assert.deepEqual(await ingests(d), [], `${what}: no ingest left`);
  await until(async () => (await blobs(d)).length === 0, `${what}: the GC to remove the pull's manifest and config`);
  assert.equal(leaseCount(d), 0, `${what}: no lease left`);
}

const pullLines = (d: TestDaemon, has: string) =>
  d
    .logs()
    .split("\n")
    .filter((l) => l.includes('"method":"runtime.v1.ImageService/PullImage"') && l.includes(has));

/** berthd's call log line of a PullImage it answered with `code` (written once the handler returned). */
function pullAnswered(d: TestDaemon, code: string): Promise<unknown> {
  return until(() => pullLines(d, `"code":"${code}"`).length > 0, `berthd's log of PullImage answered ${code}`);
}

test("a PullImage cancelled mid-blob stops the download and leaves nothing; the next pull starts afresh and succeeds", async (t) => {
  const d = await startDaemon();
  t.after(() => d.stop());
  const img = images.cancel;
  proxy.options.stall = { match: img.big, bytes: MiB };
  const stalled = next("stalled", img.big);
  const abandoned = next("abandoned", img.big);
  const pull = startPull(d, img.ref);
  const held = await stalled;
  const partial = await partialOnDisk(d, img.big);
  assert.ok(partial < 4 * MiB, "cancelled mid-blob");
  pull.call.cancel();
  await assert.rejects(pull.result, { code: grpc.status.CANCELLED });
  // berthd hung up on the registry: the cancel reached the download itself.
  assert.equal(await abandoned, held);
  // Answered (in its log) once the pull had wound down: what it wrote is gone by then.
  await pullAnswered(d, "CANCELLED");
  await nothingLeft(d, "after the cancel");

  proxy.release();
  const before = proxy.requests.length;
  const r = await d.img.pullImage({ image: { image: img.ref } }, { deadlineMs: 120_000 });
  assert.equal(r.imageRef, img.id);
  const again = proxy.requests.slice(before).filter((q) => q.path.includes(img.big));
  assert.equal(again.length, 1);
  assert.equal(again[0].range, undefined, "nothing of the cancelled download was kept to resume from");
  assert.deepEqual(await ingests(d), []);
  assert.equal(leaseCount(d), 0);
  assert.equal((await d.img.imageStatus({ image: { image: img.ref } })).image?.id, img.id);
});

test("a PullImage whose deadline passes mid-blob is cancelled the same way", async (t) => {
  const d = await startDaemon();
  t.after(() => d.stop());
  const img = images.cancel;
  proxy.options.stall = { match: img.big, bytes: MiB };
  t.after(() => proxy.release());
  // The deadline must pass while the blob is held back, not before it started: 15 s is far more
  // than the manifest, the config and a MiB take on loopback.
  const stalled = next("stalled", img.big);
  const abandoned = next("abandoned", img.big);
  const pull = startPull(d, img.ref, 15_000);
  let heldFirst = false;
  await Promise.race([stalled.then(() => (heldFirst = true)), pull.result.catch(() => {})]);
  assert.ok(heldFirst, "precondition: the deadline passed before the blob started arriving");
  await assert.rejects(pull.result, { code: grpc.status.DEADLINE_EXCEEDED });
  await abandoned; // berthd hung up on the held blob
  await pullAnswered(d, "CANCELLED");
  await nothingLeft(d, "after the deadline");
});

test("two callers of one pull: one cancels mid-blob, the download carries on and the other gets the image", async (t) => {
  const d = await startDaemon();
  t.after(() => d.stop());
  const img = images.shared;
  proxy.options.stall = { match: img.big, bytes: MiB };
  t.after(() => proxy.release());
  const stalled = next("stalled", img.big);
  const first = startPull(d, img.ref);
  await stalled;
  await partialOnDisk(d, img.big);
  const second = startPull(d, img.ref);
  // berthd logs a PullImage as it starts, and joins the running pull before anything else of
  // it runs: once the second call is logged, it waits on the same pull as the first.
  await until(() => pullLines(d, "pulling image").length === 2, "berthd's log of the second PullImage");
  first.call.cancel();
  await assert.rejects(first.result, { code: grpc.status.CANCELLED });
  // berthd answered the cancelled caller (so it has left the pull) while the download goes on.
  await pullAnswered(d, "CANCELLED");
  assert.ok(!proxy.requests.some((r) => r.path.includes(img.big) && r.abandoned), "the held download was not given up");
  proxy.release();
  const r = await second.result;
  assert.equal(r.imageRef, img.id);
  const gets = proxy.requests.filter((q) => q.path.includes(img.big));
  assert.equal(gets.length, 1, "one download of the blob, never restarted");
  assert.equal(gets[0].abandoned, undefined);
  assert.deepEqual(await ingests(d), []);
  assert.equal(leaseCount(d), 0);
  assert.ok((await blobs(d)).includes(img.big.slice(7)));
});

test("a registry that stops sending mid-blob: image_pull_progress_timeout aborts the pull with DEADLINE_EXCEEDED and leaves nothing", async (t) => {
  const d = await startDaemon({ config: '[image]\nimage_pull_progress_timeout = "2s"\n' });
  t.after(() => d.stop());
  const img = images.stall;
  proxy.options.stall = { match: img.big, bytes: MiB };
  t.after(() => proxy.release());
  const abandoned = next("abandoned", img.big);
  const err = await d.img
    .pullImage({ image: { image: img.ref } }, { deadlineMs: 120_000 })
    .then(() => assert.fail("the pull finished through a stall"))
    .catch((e: grpc.ServiceError) => e);
  assert.equal(err.code, grpc.status.DEADLINE_EXCEEDED, err.message);
  assert.match(err.details, new RegExp(`pull of ${img.ref.replace(/[.]/g, "\\.")} made no progress for 2s`));
  assert.match(err.details, new RegExp(`${img.big} \\(${MiB} of \\d+ bytes received\\)`));
  assert.match(err.details, /image_pull_progress_timeout/);
  await abandoned; // berthd hung up on the stalled blob
  // The answer came after the pull wound down: its ingest and lease are gone already.
  assert.deepEqual(await ingests(d), [], "no ingest left");
  assert.equal(leaseCount(d), 0, "no lease left");
  await nothingLeft(d, "after the progress timeout");

  // A registry that sends again is pulled from as usual.
  proxy.release();
  const r = await d.img.pullImage({ image: { image: img.ref } }, { deadlineMs: 120_000 });
  assert.equal(r.imageRef, img.id);
});

test("ImageSpec.runtime_handler is accepted on PullImage, ImageStatus, ListImages and RemoveImage, a known one or not", async (t) => {
  const d = await startDaemon();
  t.after(() => d.stop());
  // containerd 2.x pulls for the handler's own platform/snapshotter when one is configured,
  // else the default; a handler it does not know is not an error. berth has one of each.
  for (const runtimeHandler of ["runc", "no-such-handler"]) {
    const spec = { image: small.ref, runtimeHandler };
    const r = await d.img.pullImage({ image: spec }, { deadlineMs: 120_000 });
    assert.equal(r.imageRef, small.id, runtimeHandler);
    assert.equal((await d.img.imageStatus({ image: spec })).image?.id, small.id, runtimeHandler);
    const list = await d.img.listImages({ filter: { image: spec } });
    assert.deepEqual(
      list.images.map((i) => i.id),
      [small.id],
      runtimeHandler,
    );
    await d.img.removeImage({ image: spec });
    assert.equal((await d.img.imageStatus({ image: { image: small.ref } })).image, undefined, runtimeHandler);
  }
});
