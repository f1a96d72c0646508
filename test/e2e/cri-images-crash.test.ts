// berthd SIGKILLed in the middle of a CRI PullImage, then restarted on the same root: the pull
// completes (resuming the partial blob), every blob in the content store hashes to its name,
// and nothing is left in ingest/.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { status } from "@grpc/grpc-js";
import { createHash, randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdtemp, readdir, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { removeMasquerade } from "../../src/network/masquerade.js";
import { startDaemon } from "../helpers/daemon.js";
import { startProxy, startRegistry, type TestProxy, type TestRegistry } from "../helpers/registry.js";
import { buildImage, makeLayer, pushLayout, writeOciLayout } from "../helpers/images.js";

let reg: TestRegistry;
let proxy: TestProxy;
let work: string;
let imageId = "";
let bigDigest = "";
let bigSize = 0;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function sha256File(p: string): Promise<string> {
  const h = createHash("sha256");
  for await (const c of createReadStream(p)) h.update(c as Buffer);
  return h.digest("hex");
}

before(async () => {
  work = await mkdtemp(join(tmpdir(), "berth-cri-crash-"));
  reg = await startRegistry();
  // Incompressible, so the compressed blob is as large as its content.
  const big = await makeLayer([{ name: "data.bin", content: randomBytes(12 << 20) }]);
  const small = await makeLayer([
    { name: "etc/", type: "directory" },
    { name: "etc/motd", content: "hi\n" },
  ]);
  const image = buildImage([small, big]);
  imageId = image.config.digest;
  bigDigest = big.digest;
  bigSize = big.size;
  await writeOciLayout(join(work, "layout"), [{ tag: "big", image }]);
  await pushLayout(join(work, "layout"), "big", `${reg.host}/test/big:1`);
  // 64 KiB every 20 ms: about 3 MiB/s, so the 12 MiB layer takes seconds to arrive.
  proxy = await startProxy(reg.host, { throttle: { match: bigDigest, chunk: 64 << 10, everyMs: 20 } });
});

after(async () => {
  await proxy?.stop();
  await reg?.stop();
  await rm(work, { recursive: true, force: true });
});

test("SIGKILL of berthd mid-PullImage: after a restart the pull completes and every stored blob verifies", async () => {
  const dir = await mkdtemp(join(tmpdir(), "berth-d-crash-"));
  try {
    const ref = `${proxy.host}/test/big:1`;
    const first = await startDaemon({ dir, keepDir: true });
    const ingest = join(first.root, "content", "ingest", bigDigest.slice(7), "data");
    const pulling = first.img.pullImage({ image: { image: ref } }, { deadlineMs: 120_000 });
    pulling.catch(() => {}); // it dies with the daemon
    // Kill once part of the big blob is on disk, well before the end.
    const deadline = Date.now() + 60_000;
    for (;;) {
      const size = await stat(ingest).then(
        (s) => s.size,
        () => 0,
      );
      if (size > 1 << 20) {
        assert.ok(size < bigSize, "the kill must land mid-blob");
        break;
      }
      if (Date.now() > deadline) throw new Error("the big blob never started arriving");
      await sleep(20);
    }
    first.kill("SIGKILL");
    const exit = await first.exited;
    assert.equal(exit.signal, "SIGKILL");
    await first.stop();
    await assert.rejects(pulling, { code: status.UNAVAILABLE }); // the connection went away
    const partial = (await stat(ingest)).size;
    assert.ok(partial > 0 && partial < bigSize, `partial ingest of ${partial} bytes`);

    // Full speed now; the restarted daemon resumes from the partial blob with a Range request.
    proxy.options.throttle = undefined;
    const before = proxy.requests.length;
    const second = await startDaemon({ dir, keepDir: true });
    try {
      const r = await second.img.pullImage({ image: { image: ref } }, { deadlineMs: 120_000 });
      assert.equal(r.imageRef, imageId);
      const resumed = proxy.requests.slice(before).find((q) => q.path.includes(bigDigest));
      assert.ok(resumed, "the big blob was requested again");
      assert.match(String(resumed.range), /^bytes=\d+-$/, "the download resumed with a Range request");
      assert.ok(resumed.bytes < bigSize, `resumed transfer sent ${resumed.bytes} of ${bigSize} bytes`);

      const blobsDir = join(second.root, "content", "blobs", "sha256");
      const names = await readdir(blobsDir);
      assert.ok(names.includes(bigDigest.slice(7)));
      for (const n of names)
        assert.equal(await sha256File(join(blobsDir, n)), n, `blob ${n} does not match its digest`);
      assert.deepEqual(await readdir(join(second.root, "content", "ingest")), [], "no ingest left after the pull");
      const s = await second.img.imageStatus({ image: { image: imageId } });
      assert.equal(s.image?.id, imageId);
    } finally {
      await second.stop();
    }
  } finally {
    // berthd installed its default network's masquerade rule (the helper keeps the dir, so it leaves it)
    await removeMasquerade((owner) => owner.startsWith(dir + "/"));
    await rm(dir, { recursive: true, force: true });
  }
});
