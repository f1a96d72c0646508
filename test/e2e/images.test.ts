// Pulling from a real registry (docker-registry) into a real content store and snapshotter.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, readdir, rm, lstat, readlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openDatabase, type Db } from "../../src/metadata/db.js";
import { ImageService } from "../../src/images/service.js";
import { NotFoundError, PermissionDeniedError, UnauthenticatedError } from "../../src/util/errors.js";
import { DigestMismatchError } from "../../src/images/content-store.js";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { startProxy, startRegistry, type TestRegistry } from "../helpers/registry.js";
import {
  buildImage,
  buildIndex,
  busyboxEntries,
  makeLayer,
  pushLayout,
  writeOciLayout,
  sha256,
} from "../helpers/images.js";

let reg: TestRegistry;
let authReg: TestRegistry;
let work: string;
const cleanups: (() => Promise<void>)[] = [];
let amd64Id = "";
let arm64Id = "";
let busyboxId = "";
let bigLayerDigest = "";
let bigLayerSize = 0;
let bigConfigDigest = "";

async function newService(snapshotter = "overlayfs"): Promise<{ svc: ImageService; db: Db; root: string }> {
  const root = await mkdtemp(join(tmpdir(), "berth-images-"));
  const db = openDatabase(join(root, "meta.db"));
  const svc = await ImageService.create({ root, db, snapshotter, registry: { configPath: undefined } });
  cleanups.push(async () => {
    db.close();
    await rm(root, { recursive: true, force: true });
  });
  return { svc, db, root };
}

before(async () => {
  work = await mkdtemp(join(tmpdir(), "berth-imgsrc-"));
  reg = await startRegistry();
  authReg = await startRegistry({ auth: { username: "alice", password: "s3cret" } });
  const base = await makeLayer(await busyboxEntries());
  const appEntries = [
    { name: "app/", type: "directory" as const },
    { name: "app/hello.txt", content: "hello\n" },
  ];
  const app = await makeLayer(appEntries, "zstd");
  const appGz = await makeLayer(appEntries, "gzip");
  const config = {
    User: "1000",
    Env: ["PATH=/bin", "GREETING=hi"],
    Cmd: ["/bin/sh"],
    WorkingDir: "/app",
    ExposedPorts: { "80/tcp": {} },
    Labels: { a: "b" },
    StopSignal: "SIGINT",
  };
  const busybox = buildImage([base, app], { config });
  // Docker schema2 has no zstd: the same image with a gzip layer (same diff IDs, so the same image ID).
  const busyboxGz = buildImage([base, appGz], { config });
  busyboxId = busybox.config.digest;
  const armLayer = await makeLayer([{ name: "arch", content: "arm64\n" }]);
  const amdLayer = await makeLayer([{ name: "arch", content: "amd64\n" }]);
  const amd = buildImage([amdLayer]);
  const arm = buildImage([armLayer], { architecture: "arm64", variant: "v8" });
  amd64Id = amd.config.digest;
  arm64Id = arm.config.digest;
  // ~4 MB of incompressible data, so a cut mid-way is mid-blob
  const big = await makeLayer([{ name: "data.bin", content: randomBytes(4 << 20) }]);
  bigLayerDigest = big.digest;
  bigLayerSize = big.size;
  const bigImage = buildImage([base, big]);
  bigConfigDigest = bigImage.config.digest;
  // the same first two layers (so the same snapshot for the big one) and one more
  const bigPlus = buildImage([base, big, await makeLayer([{ name: "plus", content: "plus\n" }])]);
  const layout = join(work, "layout");
  await writeOciLayout(layout, [
    { tag: "busybox", image: busybox },
    { tag: "busybox-gz", image: busyboxGz },
    { tag: "big", image: bigImage },
    { tag: "bigplus", image: bigPlus },
    { tag: "multi", image: buildIndex([arm, amd]) },
  ]);
  await pushLayout(layout, "busybox", `${reg.host}/test/busybox:oci`);
  await pushLayout(layout, "busybox-gz", `${reg.host}/test/busybox:docker`, { format: "v2s2" });
  await pushLayout(layout, "multi", `${reg.host}/test/multi:latest`, { all: true });
  await pushLayout(layout, "big", `${reg.host}/test/big:1`);
  await pushLayout(layout, "bigplus", `${reg.host}/test/bigplus:1`);
  await pushLayout(layout, "busybox", `${authReg.host}/private/busybox:1`, { creds: "alice:s3cret" });
});

after(async () => {
  for (const c of cleanups.reverse()) await c();
  await reg?.stop();
  await authReg?.stop();
  await rm(work, { recursive: true, force: true });
});

test("anonymous pull of an OCI image records it and unpacks its layers", async () => {
  const { svc } = await newService();
  const img = await svc.pull(`${reg.host}/test/busybox:oci`);
  assert.equal(img.id, busyboxId);
  assert.deepEqual(img.repoTags, [`${reg.host}/test/busybox:oci`]);
  assert.equal(img.repoDigests.length, 1);
  assert.match(img.repoDigests[0], new RegExp(`^${reg.host}/test/busybox@sha256:[a-f0-9]{64}$`));
  assert.equal(img.config.User, "1000");
  assert.deepEqual(img.config.Env, ["PATH=/bin", "GREETING=hi"]);
  assert.equal(img.config.WorkingDir, "/app");
  assert.deepEqual(Object.keys(img.config.ExposedPorts ?? {}), ["80/tcp"]);
  assert.equal(img.config.StopSignal, "SIGINT");
  assert.equal(img.architecture, "amd64");
  const mounts = await svc.prepareRootfs(img.id, "ctr1");
  assert.equal(mounts[0].type, "overlay");
  const lower = lowerDirs(mounts);
  assert.equal(lower.length, 2);
  // lowerdir lists the top layer first
  assert.equal(await readFile(join(lower[0], "app/hello.txt"), "utf8"), "hello\n");
  assert.equal(await readlink(join(lower[1], "bin/sh")), "busybox");
  const st = await lstat(join(lower[1], "home/berth"));
  assert.equal(st.uid, 1000);
  assert.equal(st.mode & 0o7777, 0o750);
  assert.equal((await lstat(join(lower[1], "tmp"))).mode & 0o7777, 0o1777);
  // status by name, id, short id and digest
  assert.equal((await svc.status(`${reg.host}/test/busybox:oci`))?.id, img.id);
  assert.equal((await svc.status(img.id))?.id, img.id);
  assert.equal((await svc.status(img.id.slice(7, 19)))?.id, img.id);
  assert.equal((await svc.status(img.repoDigests[0]))?.id, img.id);
  assert.equal(await svc.status(`${reg.host}/test/busybox:nope`), undefined);
});

test("anonymous pull of a Docker schema2 image", async () => {
  const { svc } = await newService("native");
  const img = await svc.pull(`${reg.host}/test/busybox:docker`);
  assert.equal(img.config.User, "1000");
  const mounts = await svc.prepareRootfs(img.id, "c");
  assert.equal(mounts[0].type, "bind");
  assert.equal(await readFile(join(mounts[0].source, "app/hello.txt"), "utf8"), "hello\n");
  assert.equal((await readFile(join(mounts[0].source, "etc/passwd"), "utf8")).split("\n")[1].split(":")[0], "berth");
});

test("a multi-platform index resolves to this host's platform (amd64)", async () => {
  const { svc } = await newService();
  const img = await svc.pull(`${reg.host}/test/multi:latest`);
  assert.equal(img.id, amd64Id);
  const arm = await svc.pull(`${reg.host}/test/multi:latest`, undefined, {
    platform: { os: "linux", architecture: "aarch64" },
  });
  assert.equal(arm.id, arm64Id);
  await assert.rejects(
    svc.pull(`${reg.host}/test/multi:latest`, undefined, { platform: { os: "linux", architecture: "s390x" } }),
    NotFoundError,
  );
});

test("registry with htpasswd: good credentials pull; bad or none are Unauthenticated", async () => {
  const { svc } = await newService();
  const ref = `${authReg.host}/private/busybox:1`;
  await assert.rejects(svc.pull(ref), (err: unknown) => {
    assert.ok(err instanceof UnauthenticatedError, String(err));
    assert.match((err as Error).message, /requires authentication.*no credentials/);
    return true;
  });
  await assert.rejects(svc.pull(ref, { username: "alice", password: "wrong" }), (err: unknown) => {
    assert.ok(err instanceof UnauthenticatedError, String(err));
    assert.match((err as Error).message, /rejected the credentials/);
    return true;
  });
  const img = await svc.pull(ref, { auth: Buffer.from("alice:s3cret").toString("base64") });
  assert.equal(img.id, busyboxId);
  void PermissionDeniedError;
});

test("removing a tag keeps other tags; removing by id removes all names", async () => {
  const { svc } = await newService();
  const a = await svc.pull(`${reg.host}/test/busybox:oci`);
  const b = await svc.pull(`${reg.host}/test/busybox:docker`);
  assert.equal(a.id, b.id);
  const both = await svc.status(a.id);
  assert.deepEqual(both?.repoTags.sort(), [`${reg.host}/test/busybox:docker`, `${reg.host}/test/busybox:oci`]);
  assert.equal(both?.repoDigests.length, 2);
  const r = await svc.remove(`${reg.host}/test/busybox:oci`);
  assert.equal(r.imageRemoved, false);
  assert.deepEqual((await svc.status(a.id))?.repoTags, [`${reg.host}/test/busybox:docker`]);
  const r2 = await svc.remove(a.id);
  assert.equal(r2.imageRemoved, true);
  assert.equal(await svc.status(a.id), undefined);
  assert.deepEqual(await svc.list(), []);
  await assert.rejects(svc.remove(a.id), NotFoundError);
});

test("the same image pulled twice at once is fetched once", async () => {
  const proxy = await startProxy(reg.host);
  try {
    const { svc } = await newService();
    const ref = `${proxy.host}/test/busybox:oci`;
    const [x, y] = await Promise.all([svc.pull(ref), svc.pull(ref)]);
    assert.equal(x.id, y.id);
    const blobGets = proxy.requests.filter((r) => r.method === "GET" && r.path.includes("/blobs/"));
    assert.equal(blobGets.length, 3, "config and two layers, each once");
    assert.equal(new Set(blobGets.map((r) => r.path)).size, 3);
    assert.equal((await readdir(join(svc.content.root, "blobs/sha256"))).length, 4); // manifest, config, 2 layers
  } finally {
    await proxy.stop();
  }
});

test("a blob corrupted in transit fails the pull with a digest mismatch and leaves nothing behind", async () => {
  const proxy = await startProxy(reg.host, { tamper: bigLayerDigest });
  try {
    const { svc } = await newService();
    await assert.rejects(svc.pull(`${proxy.host}/test/big:1`), (err: unknown) => {
      assert.ok(err instanceof DigestMismatchError, String(err));
      assert.match(
        (err as Error).message,
        new RegExp(`digest mismatch: expected ${bigLayerDigest} got sha256:[a-f0-9]{64}`),
      );
      return true;
    });
    const hex = bigLayerDigest.slice(7);
    assert.ok(!(await readdir(join(svc.content.root, "blobs/sha256"))).includes(hex));
    assert.deepEqual(await readdir(join(svc.content.root, "ingest")), []);
    assert.deepEqual(await svc.list(), []);
    // The layer was being unpacked as it arrived: that half-made snapshot is gone too.
    assert.deepEqual(
      svc.snapshotter.list().filter((i) => i.kind === "active"),
      [],
      "no snapshot of the corrupted layer",
    );
  } finally {
    await proxy.stop();
  }
});

test("a config corrupted in transit fails the pull with a digest mismatch; no image or config is kept, no snapshot half-made", async () => {
  const proxy = await startProxy(reg.host, { tamper: bigConfigDigest });
  try {
    const { svc } = await newService();
    await assert.rejects(svc.pull(`${proxy.host}/test/big:1`), (err: unknown) => {
      assert.ok(err instanceof DigestMismatchError, String(err));
      assert.match((err as Error).message, new RegExp(`digest mismatch: expected ${bigConfigDigest} got sha256:`));
      return true;
    });
    assert.deepEqual(await svc.list(), []);
    assert.equal(await svc.content.has(bigConfigDigest), false);
    assert.deepEqual(await readdir(join(svc.content.root, "ingest")), []);
    assert.deepEqual(
      svc.snapshotter.list().filter((i) => i.kind === "active"),
      [],
    );
  } finally {
    await proxy.stop();
  }
});

/** An overlay mount's lower directories, the top layer first. */
function lowerDirs(mounts: { options: string[] }[]): string[] {
  return mounts[0].options
    .find((o) => o.startsWith("lowerdir="))!
    .slice("lowerdir=".length)
    .split(":");
}

/** Resolves once data.bin of the big layer has bytes in a snapshot still being unpacked. */
async function bigLayerUnpacking(svc: ImageService): Promise<void> {
  const written = async () => {
    const info = svc.snapshotter.list().find((i) => i.kind === "active" && i.labels["berth.io/unpacking"]);
    if (!info) return 0;
    return (await lstat(join(svc.snapshotter.applyDir(info.key), "data.bin")).catch(() => undefined))?.size ?? 0;
  };
  for (let i = 0; (await written()) === 0; i++) {
    assert.ok(i < 2000, "data.bin appears in the layer's snapshot while the download is held");
    await sleep(10);
  }
}

test("a layer is unpacked while it downloads, and committed once its digest checked out", async () => {
  const proxy = await startProxy(reg.host, { stall: { match: bigLayerDigest, bytes: 1 << 20 } });
  try {
    const { svc } = await newService();
    const stalled = new Promise((r) => proxy.events.once("stalled", r));
    const pull = svc.pull(`${proxy.host}/test/big:1`);
    pull.catch(() => {});
    await stalled;
    // The registry holds the rest of the blob back; its first MiB is unpacked already.
    await bigLayerUnpacking(svc);
    assert.equal(await svc.content.has(bigLayerDigest), false, "the blob is not complete yet");
    assert.equal(
      svc.snapshotter.list().filter((i) => i.kind === "committed").length,
      1,
      "only the base layer is committed",
    );
    proxy.release();
    const img = await pull;
    const mounts = await svc.prepareRootfs(img.id, "big-ctr");
    const lower = lowerDirs(mounts);
    assert.equal((await lstat(join(lower[0], "data.bin"))).size, 4 << 20);
    assert.deepEqual(
      svc.snapshotter.list().filter((i) => i.kind === "active" && i.labels["berth.io/unpacking"]),
      [],
    );
  } finally {
    proxy.release();
    await proxy.stop();
  }
});

test("a pull cancelled while another image's pull waits on its unpack of a shared layer leaves that pull to finish", async () => {
  const proxy = await startProxy(reg.host, { stall: { match: bigLayerDigest, bytes: 1 << 20 } });
  try {
    const { svc } = await newService();
    const stalled = new Promise((r) => proxy.events.once("stalled", r));
    const cancel = new AbortController();
    const first = svc.pull(`${proxy.host}/test/big:1`, undefined, { signal: cancel.signal });
    first.catch(() => {});
    await stalled;
    await bigLayerUnpacking(svc);
    // The second image has the same big layer on the same base: its pull joins the unpack the
    // first one is doing (and the one download).
    let joined!: () => void;
    const joining = new Promise<void>((r) => (joined = r));
    const second = svc.pull(`${proxy.host}/test/bigplus:1`, undefined, {
      onProgress: (p) => p.phase === "unpacking" && p.digest === bigLayerDigest && joined(),
    });
    second.catch(() => {});
    await joining;
    cancel.abort();
    await assert.rejects(first, { kind: "Canceled" });
    proxy.release();
    const img = await second;
    const mounts = await svc.prepareRootfs(img.id, "bigplus-ctr");
    const lower = lowerDirs(mounts);
    assert.equal(await readFile(join(lower[0], "plus"), "utf8"), "plus\n");
    assert.equal((await lstat(join(lower[1], "data.bin"))).size, 4 << 20);
  } finally {
    proxy.release();
    await proxy.stop();
  }
});

test("an interrupted download resumes with Range on the next pull", async () => {
  const cutAt = 1_000_000;
  const proxy = await startProxy(reg.host, { cut: { match: bigLayerDigest, bytes: cutAt, times: 1 } });
  try {
    const { svc } = await newService();
    const ref = `${proxy.host}/test/big:1`;
    // First pull: the connection drops after cutAt bytes and the blob is then refused (404).
    proxy.options.refuse = undefined;
    const first = svc.pull(ref);
    // After the cut, make the registry "lose" the blob so this pull fails and keeps its partial ingest.
    const waitCut = async () => {
      while (!proxy.requests.some((r) => r.path.includes(bigLayerDigest) && r.bytes >= cutAt)) await sleep(5);
      proxy.options.refuse = bigLayerDigest;
    };
    await Promise.all([assert.rejects(first, NotFoundError), waitCut()]);
    const ingests = await svc.content.ingests();
    assert.equal(ingests.length, 1);
    assert.equal(ingests[0].digest, bigLayerDigest);
    // The proxy resets the connection after cutAt bytes; a reset may drop some unread bytes.
    const offset = ingests[0].offset;
    assert.ok(offset > 0 && offset <= cutAt, `partial ingest holds ${offset} bytes`);
    proxy.options.refuse = undefined;
    const before = proxy.requests.length;
    const img = await svc.pull(ref);
    assert.ok(img.id);
    const again = proxy.requests.slice(before).filter((r) => r.path.includes(bigLayerDigest) && r.method === "GET");
    assert.equal(again.length, 1);
    assert.equal(again[0].range, `bytes=${offset}-`);
    assert.equal(again[0].status, 206);
    assert.equal(again[0].bytes, bigLayerSize - offset);
    assert.deepEqual(await readdir(join(svc.content.root, "ingest")), []);
    await verifyAllBlobs(svc);
  } finally {
    await proxy.stop();
  }
});

test("a pull SIGKILLed mid-download is completed by the next pull and every blob verifies", async () => {
  const proxy = await startProxy(reg.host, { throttle: { match: bigLayerDigest, chunk: 64 << 10, everyMs: 20 } });
  const { root } = await newService();
  try {
    const distRoot = new URL("../..", import.meta.url).pathname; // dist/
    const script = `
      import { openDatabase } from ${JSON.stringify(join(distRoot, "src/metadata/db.js"))};
      import { ImageService } from ${JSON.stringify(join(distRoot, "src/images/service.js"))};
      const db = openDatabase(${JSON.stringify(join(root, "meta.db"))});
      const svc = await ImageService.create({ root: ${JSON.stringify(root)}, db, registry: { configPath: undefined } });
      await svc.pull(${JSON.stringify(`${proxy.host}/test/big:1`)});
      console.log("finished");`;
    const child = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d));
    child.stderr.on("data", (d: Buffer) => (out += d));
    const dataFile = join(root, "content/ingest", bigLayerDigest.slice(7), "data");
    for (;;) {
      const size = await lstat(dataFile).then(
        (s) => s.size,
        () => 0,
      );
      if (size > 300_000) break;
      assert.equal(child.exitCode, null, `child ended early: ${out}`);
      await sleep(10);
    }
    child.kill("SIGKILL");
    await new Promise((r) => child.once("exit", r));
    assert.ok(!out.includes("finished"));
    proxy.options.throttle = undefined;
    const db = openDatabase(join(root, "meta.db"));
    try {
      const svc = await ImageService.create({ root, db, registry: { configPath: undefined } });
      const before = proxy.requests.length;
      const img = await svc.pull(`${proxy.host}/test/big:1`);
      assert.ok((await svc.status(img.id))?.repoTags.length);
      const again = proxy.requests.slice(before).filter((r) => r.path.includes(bigLayerDigest) && r.method === "GET");
      assert.equal(again.length, 1);
      assert.match(again[0].range ?? "", /^bytes=\d+-$/);
      assert.ok(again[0].bytes < bigLayerSize);
      await verifyAllBlobs(svc);
    } finally {
      db.close();
    }
  } finally {
    await proxy.stop();
  }
});

test("gc removes unreferenced blobs and snapshots, keeps leased ones and containers' layers", async () => {
  const { svc } = await newService();
  const a = await svc.pull(`${reg.host}/test/busybox:oci`);
  const m = await svc.pull(`${reg.host}/test/multi:latest`);
  // a container on the multi image protects its layers even after the image is removed
  await svc.prepareRootfs(m.id, "container-1");
  await svc.remove(m.id);
  const aBlobs = svc.images.blobsOf(a.id);
  await svc.remove(a.id);
  const lease = svc.leases.create();
  svc.leases.addResource(lease, { type: "content", resource: aBlobs[aBlobs.length - 1] });
  const r = await svc.gc();
  const left = new Set((await svc.content.list()).map((b) => b.digest));
  assert.ok(left.has(aBlobs[aBlobs.length - 1]), "leased blob kept");
  for (const d of aBlobs.slice(0, -1)) assert.ok(!left.has(d), `unreferenced ${d} removed`);
  assert.ok(r.removedSnapshots.includes(a.chainId));
  const keys = svc.snapshotter
    .list()
    .map((s) => s.key)
    .sort();
  assert.deepEqual(keys, ["container-1", m.chainId].sort());
  // once the container is gone, its layer goes too
  await svc.removeRootfs("container-1");
  svc.leases.delete(lease);
  await svc.gc();
  assert.deepEqual(svc.snapshotter.list(), []);
  assert.deepEqual(await svc.content.list(), []);
});

async function verifyAllBlobs(svc: ImageService): Promise<void> {
  for (const b of await svc.content.list()) {
    assert.equal(sha256(await readFile(svc.content.path(b.digest))), b.digest);
  }
}
