// Layers as the ecosystem writes them, end to end: an image whose top layer umoci 0.4.x
// wrote (`umoci insert`: the tar stops right after the last file's data, without padding and
// end blocks) is pushed to a real registry, pulled through berthd's CRI socket and run; a
// layer cut short inside a member fails the pull with DATA_LOSS naming the layer, and leaves
// no snapshot, image or temp file behind.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { status } from "@grpc/grpc-js";
import { ContainerState } from "../../src/gen/cri/runtime/v1/api.js";
import { fullBusyboxEntries, startCriEnv, testImages, until, type CriEnv } from "../helpers/cri.js";
import { buildImage, makeLayer, pushLayout, tarOf, writeOciLayout } from "../helpers/images.js";
import { daemonLeaks } from "../helpers/leaks.js";

const CONTENT = "written by umoci\n"; // 17 bytes: its tar member needs padding
let env: CriEnv;
let work: string;
let umociRef: string;
let umociLayer: { digest: string; rawLength: number };
let truncRef: string;
let truncDigest: string;

interface Manifest {
  layers: { digest: string }[];
}

before(async () => {
  env = await startCriEnv({ bridge: "berthlay0", subnet: "10.234.70.0/24" });
  work = mkdtempSync(join(tmpdir(), "berth-umoci-"));
  const layout = join(work, "layout");
  const env0 = { Env: ["PATH=/bin"], Cmd: ["/bin/sh"] };
  const base = await makeLayer(fullBusyboxEntries());
  // A hand-made layer cut inside its only member's data, recompressed: its digest and diff ID
  // are right, so only the tar itself is short.
  const whole = await tarOf([{ name: "big", content: "z".repeat(2000) }]);
  const trunc = await makeLayer(whole.subarray(0, 512 + 1000));
  truncDigest = trunc.digest;
  await writeOciLayout(layout, [
    { tag: "base", image: buildImage([base], { config: env0 }) },
    { tag: "trunc", image: buildImage([base, trunc], { config: env0 }) },
  ]);
  const src = join(work, "insert");
  mkdirSync(join(src, "usr/local/share"), { recursive: true });
  writeFileSync(join(src, "usr/local/share/umoci.txt"), CONTENT);
  execFileSync("umoci", ["insert", "--image", `${layout}:base`, "--tag", "umoci", src, "/"]);
  // The precondition this test is about: umoci's layer really lacks the padding.
  const index = JSON.parse(readFileSync(join(layout, "index.json"), "utf8")) as {
    manifests: { digest: string; annotations: Record<string, string> }[];
  };
  const desc = index.manifests.find((m) => m.annotations["org.opencontainers.image.ref.name"] === "umoci")!;
  const blob = (d: string) => readFileSync(join(layout, "blobs/sha256", d.slice(7)));
  const manifest = JSON.parse(blob(desc.digest).toString()) as Manifest;
  const top = manifest.layers[manifest.layers.length - 1].digest;
  umociLayer = { digest: top, rawLength: gunzipSync(blob(top)).length };
  umociRef = `${env.images.registry.host}/test/umoci:1`;
  truncRef = `${env.images.registry.host}/test/trunc:1`;
  await pushLayout(layout, "umoci", umociRef);
  await pushLayout(layout, "trunc", truncRef);
});

after(async () => {
  await env?.stop();
  await testImages().then((i) => i.stop());
  if (work) rmSync(work, { recursive: true, force: true });
});

test("umoci's layer ends inside its last member's padding, without end blocks", () => {
  assert.notEqual(umociLayer.rawLength % 512, 0, `umoci layer of ${umociLayer.rawLength} bytes`);
});

test("an image with umoci's unpadded layer pulls through the CRI and its file is there in a container", async () => {
  const r = await env.d.img.pullImage({ image: { image: umociRef } }, { deadlineMs: 120_000 });
  assert.match(r.imageRef, /^sha256:/);
  const pod = await env.runPod("umoci");
  const cid = await env.runContainer(pod, "cat", ["cat", "/usr/local/share/umoci.txt"], { image: { image: umociRef } });
  await until(
    async () =>
      (await env.d.rt.containerStatus({ containerId: cid })).status?.state === ContainerState.CONTAINER_EXITED,
    "container exit",
  );
  const cs = (await env.d.rt.containerStatus({ containerId: cid })).status!;
  assert.equal(cs.exitCode, 0);
  assert.match(readFileSync(cs.logPath, "utf8"), /^\S+ stdout F written by umoci$/m);
  await env.d.rt.stopPodSandbox({ podSandboxId: pod.id });
  await env.d.rt.removePodSandbox({ podSandboxId: pod.id });
  await env.d.img.removeImage({ image: { image: umociRef } });
});

function snapshotDirs(): string[] {
  const base = join(env.d.root, "snapshots");
  const out: string[] = [];
  for (const kind of readdirSync(base)) {
    for (const e of readdirSync(join(base, kind))) {
      if (e === "snapshots") out.push(...readdirSync(join(base, kind, e)).map((s) => `${kind}/snapshots/${s}`));
      else out.push(`${kind}/${e}`);
    }
  }
  return out.sort();
}

test("a layer cut inside a member fails the pull with DATA_LOSS naming the layer, and leaves nothing", async () => {
  // The base layer is unpacked first, so only the truncated layer's snapshot is at stake.
  await env.d.img.pullImage({ image: { image: env.images.busybox } }, { deadlineMs: 120_000 });
  const before = snapshotDirs();
  await assert.rejects(env.d.img.pullImage({ image: { image: truncRef } }, { deadlineMs: 120_000 }), (err: Error) => {
    const e = err as Error & { code: number; details: string };
    assert.equal(e.code, status.DATA_LOSS, `code ${e.code}: ${e.details}`);
    assert.ok(e.details.includes(`layer ${truncDigest}`), e.details);
    assert.match(e.details, /truncated inside the data of "big": 1000 of 2000 bytes/);
    return true;
  });
  // The same again (nothing half-done in the way), then nothing of it is left.
  await assert.rejects(env.d.img.pullImage({ image: { image: truncRef } }, { deadlineMs: 120_000 }), {
    code: status.DATA_LOSS,
  });
  assert.deepEqual(snapshotDirs(), before);
  const images = await env.d.img.listImages({});
  assert.ok(!images.images.some((i) => i.repoTags.includes(truncRef)), "no image recorded");
  assert.deepEqual(daemonLeaks(env.d), []);
});
