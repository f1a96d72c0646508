// Disk full during a pull (issue 8, reliability): berthd's root on a 20 MiB tmpfs, an image of
// three incompressible 8 MiB layers. The pull fails with an error that says the disk is full,
// no stored blob is corrupt, berthd keeps serving, and once the tmpfs is grown the next pull
// completes with every blob verifying. The tmpfs is unmounted at the end.
import * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { daemonConfig, testImages } from "../helpers/cri.js";
import { startDaemon, type TestDaemon } from "../helpers/daemon.js";
import { buildImage, makeLayer, pushLayout, writeOciLayout } from "../helpers/images.js";
import { corruptBlobs, leaks } from "../helpers/leaks.js";

let dir: string;
let root: string;
let mounted = false;
let d: TestDaemon | undefined;
let bigImage: string;

before(async () => {
  const images = await testImages();
  const layers = await Promise.all(
    [0, 1, 2].map((i) => makeLayer([{ name: `blob${i}`, content: randomBytes(8 << 20) }])),
  );
  const layout = mkdtempSync(join(tmpdir(), "berth-rel-img-"));
  try {
    await writeOciLayout(layout, [{ tag: "big", image: buildImage(layers, { config: { Cmd: ["/blob0"] } }) }]);
    bigImage = `${images.registry.host}/test/rel-diskfull:1`;
    await pushLayout(layout, "big", bigImage);
  } finally {
    rmSync(layout, { recursive: true, force: true });
  }
  dir = mkdtempSync(join(tmpdir(), "berth-rel-full-"));
  root = join(dir, "root");
  mkdirSync(root, { mode: 0o700 });
  execFileSync("mount", ["-t", "tmpfs", "-o", "size=20m,mode=0700", "berth-rel-full", root]);
  mounted = true;
});

after(async () => {
  await d?.stop();
  if (mounted) execFileSync("umount", [root]);
  rmSync(dir, { recursive: true, force: true });
  await (await testImages()).stop();
});

test(
  "a pull that fills the disk fails clearly, corrupts nothing, and succeeds once space is back",
  { timeout: 300_000 },
  async () => {
    // The bridge is never created: this file runs no pod.
    d = await startDaemon({
      config: daemonConfig({ bridge: "berthrel1d", subnet: "10.234.21.0/24" }),
      dir,
      keepDir: true,
      readyTimeoutMs: 60_000,
    });

    const err = await d.img.pullImage({ image: { image: bigImage } }, { deadlineMs: 120_000 }).then(
      () => undefined,
      (e: grpc.ServiceError) => e,
    );
    assert.ok(err, "the pull fails on a full disk");
    console.log(`pull on a full disk: ${grpc.status[err.code]}: ${err.details}`);
    assert.match(err.details, /no space|ENOSPC|disk.*full/i, "the error says the disk is full");
    assert.equal(err.code, grpc.status.RESOURCE_EXHAUSTED, grpc.status[err.code]);

    const blobs = corruptBlobs(root);
    assert.deepEqual(blobs.bad, [], `no stored blob is corrupt (${blobs.checked} checked)`);
    assert.equal((await d.img.imageStatus({ image: { image: bigImage } })).image, undefined, "no half image listed");
    assert.equal((await d.rt.version({})).runtimeName, "berth", "berthd keeps serving");

    // Space comes back: the next pull succeeds (resuming what it can) and everything verifies.
    execFileSync("mount", ["-o", "remount,size=200m", root]);
    await d.img.pullImage({ image: { image: bigImage } }, { deadlineMs: 120_000 });
    const st = await d.img.imageStatus({ image: { image: bigImage } });
    assert.ok(st.image, "the image is present");
    const after = corruptBlobs(root);
    assert.deepEqual(after.bad, []);
    assert.ok(after.checked >= 5, `config, manifest and three layers stored (${after.checked})`);

    await d.img.removeImage({ image: { image: bigImage } });
    await d.stop();
    // The tmpfs itself is the test's mount.
    assert.deepEqual(
      leaks({ dir, root, state: d.state, socket: d.socket }).filter((l) => l !== `mount ${root}`),
      [],
    );
  },
);
