// The CRI ImageService end to end: a private berthd (bin/berthd) and real registries, called
// over the CRI socket exactly as kubelet and crictl call it.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { status } from "@grpc/grpc-js";
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startDaemon, type TestDaemon } from "../helpers/daemon.js";
import { startProxy, startRegistry, type TestRegistry } from "../helpers/registry.js";
import { buildImage, buildIndex, busyboxEntries, makeLayer, pushLayout, writeOciLayout } from "../helpers/images.js";

let reg: TestRegistry;
let authReg: TestRegistry;
let work: string;
let d: TestDaemon;
const ids = { uid: "", named: "", amd64: "", arm64: "", priv: "", gone: "" };
let uidManifest = "";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until<T>(fn: () => Promise<T | undefined | false>, what: string, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

before(async () => {
  work = await mkdtemp(join(tmpdir(), "berth-cri-images-"));
  reg = await startRegistry();
  authReg = await startRegistry({ auth: { username: "alice", password: "s3cret" } });
  const base = await makeLayer(await busyboxEntries());
  const app = await makeLayer([
    { name: "app/", type: "directory" },
    { name: "app/hello.txt", content: "hello\n" },
  ]);
  const uidImage = buildImage([base, app], { config: { User: "1000:1000", Env: ["PATH=/bin"], Cmd: ["/bin/sh"] } });
  const namedImage = buildImage([base], { config: { User: "berth", Env: ["PATH=/bin"], Cmd: ["/bin/sh"] } });
  const amd = buildImage([await makeLayer([{ name: "arch", content: "amd64\n" }])]);
  const arm = buildImage([await makeLayer([{ name: "arch", content: "arm64\n" }])], {
    architecture: "arm64",
    variant: "v8",
  });
  const gone = buildImage([await makeLayer([{ name: "only-here", content: "x".repeat(100_000) }])]);
  ids.uid = uidImage.config.digest;
  uidManifest = uidImage.manifest.digest;
  ids.named = namedImage.config.digest;
  ids.amd64 = amd.config.digest;
  ids.arm64 = arm.config.digest;
  ids.gone = gone.config.digest;
  ids.priv = namedImage.config.digest;
  const layout = join(work, "layout");
  await writeOciLayout(layout, [
    { tag: "uid", image: uidImage },
    { tag: "named", image: namedImage },
    { tag: "multi", image: buildIndex([arm, amd]) },
    { tag: "gone", image: gone },
  ]);
  await pushLayout(layout, "uid", `${reg.host}/test/uid:1`);
  await pushLayout(layout, "uid", `${reg.host}/test/uid:2`);
  await pushLayout(layout, "named", `${reg.host}/test/named:1`);
  await pushLayout(layout, "multi", `${reg.host}/test/multi:1`, { all: true });
  await pushLayout(layout, "gone", `${reg.host}/test/gone:1`);
  await pushLayout(layout, "named", `${authReg.host}/private/named:1`, { creds: "alice:s3cret" });
  d = await startDaemon();
});

after(async () => {
  await d?.stop();
  await Promise.all([reg?.stop(), authReg?.stop()]);
  await rm(work, { recursive: true, force: true });
});

test("PullImage returns the image id; a bad reference, a missing image and a dead registry get their codes", async () => {
  const r = await d.img.pullImage({ image: { image: `${reg.host}/test/uid:1` } });
  assert.equal(r.imageRef, ids.uid);
  await assert.rejects(d.img.pullImage({ image: { image: "" } }), { code: status.INVALID_ARGUMENT });
  await assert.rejects(d.img.pullImage({ image: { image: `${reg.host}/Bad_Upper/Case:1` } }), {
    code: status.INVALID_ARGUMENT,
  });
  await assert.rejects(d.img.pullImage({ image: { image: `${reg.host}/test/uid:nope` } }), {
    code: status.NOT_FOUND,
  });
  await assert.rejects(d.img.pullImage({ image: { image: `${reg.host}/test/nothing:1` } }), {
    code: status.NOT_FOUND,
  });
  // Port 1 on loopback: nothing listens, the connection is refused.
  await assert.rejects(d.img.pullImage({ image: { image: "127.0.0.1:1/test/uid:1" } }, { deadlineMs: 60_000 }), {
    code: status.UNAVAILABLE,
  });
});

test("PullImage with AuthConfig: good credentials pull, bad or none are UNAUTHENTICATED with a clear message", async () => {
  const ref = `${authReg.host}/private/named:1`;
  await assert.rejects(d.img.pullImage({ image: { image: ref } }), {
    code: status.UNAUTHENTICATED,
    details: /requires authentication.*no credentials/,
  });
  await assert.rejects(d.img.pullImage({ image: { image: ref }, auth: { username: "alice", password: "wrong" } }), {
    code: status.UNAUTHENTICATED,
    details: /rejected the credentials/,
  });
  const good = await d.img.pullImage({ image: { image: ref }, auth: { username: "alice", password: "s3cret" } });
  assert.equal(good.imageRef, ids.priv);
  // The Docker config.json form: base64("user:password") in `auth`.
  const b64 = Buffer.from("alice:s3cret").toString("base64");
  assert.equal((await d.img.pullImage({ image: { image: ref }, auth: { auth: b64 } })).imageRef, ids.priv);
});

test('credentials from [registry.auths."host"] serve pulls that bring none', async (t) => {
  const cd = await startDaemon({
    config: `[registry.auths."${authReg.host}"]\nusername = "alice"\npassword = "s3cret"\n`,
  });
  t.after(() => cd.stop());
  const r = await cd.img.pullImage({ image: { image: `${authReg.host}/private/named:1` } });
  assert.equal(r.imageRef, ids.priv);
  // Status (verbose) shows the configuration, but never the secrets in it.
  const info = (await cd.rt.status({ verbose: true })).info.config;
  assert.match(info, new RegExp(`"${authReg.host.replace(/\./g, "\\.")}"`));
  assert.ok(!info.includes("s3cret"), "the password is masked");
  // The request's own AuthConfig still wins.
  await assert.rejects(
    cd.img.pullImage({
      image: { image: `${authReg.host}/private/named:1` },
      auth: { username: "alice", password: "x" },
    }),
    { code: status.UNAUTHENTICATED },
  );
});

test("ListImages lists everything, or what the filter names by tag, id or digest", async () => {
  await d.img.pullImage({ image: { image: `${reg.host}/test/uid:1` } });
  await d.img.pullImage({ image: { image: `${reg.host}/test/named:1` } });
  const all = await d.img.listImages({});
  const allIds = all.images.map((i) => i.id);
  assert.ok(allIds.includes(ids.uid) && allIds.includes(ids.named), JSON.stringify(allIds));
  for (const f of [
    `${reg.host}/test/named:1`,
    ids.named,
    ids.named.slice(7),
    `${reg.host}/test/named@${(await d.img.imageStatus({ image: { image: ids.named } })).image!.repoDigests[0].split("@")[1]}`,
  ]) {
    const l = await d.img.listImages({ filter: { image: { image: f } } });
    assert.deepEqual(
      l.images.map((i) => i.id),
      [ids.named],
      `filter ${f}`,
    );
  }
  assert.deepEqual((await d.img.listImages({ filter: { image: { image: `${reg.host}/test/absent:1` } } })).images, []);
});

test("ImageStatus: uid or username from User, tags, digests, size, verbose info; absent is an empty answer", async () => {
  await d.img.pullImage({ image: { image: `${reg.host}/test/uid:1` } });
  await d.img.pullImage({ image: { image: `${reg.host}/test/uid:2` } });
  const s = await d.img.imageStatus({ image: { image: `${reg.host}/test/uid:2` }, verbose: true });
  const img = s.image!;
  assert.equal(img.id, ids.uid);
  assert.equal(img.uid?.value, 1000n);
  assert.equal(img.username, "");
  assert.deepEqual([...img.repoTags].sort(), [`${reg.host}/test/uid:1`, `${reg.host}/test/uid:2`]);
  assert.deepEqual(img.repoDigests, [`${reg.host}/test/uid@${uidManifest}`]);
  assert.ok(img.size > 1_000_000n, `size ${img.size}`); // busybox is in there
  assert.equal(img.pinned, false);
  assert.equal(img.spec?.image, ids.uid);
  const info = JSON.parse(s.info.info) as { imageSpec: { config: { User: string } }; chainID: string };
  assert.equal(info.imageSpec.config.User, "1000:1000");
  assert.match(info.chainID, /^sha256:[a-f0-9]{64}$/);
  // Not verbose: no info.
  assert.deepEqual((await d.img.imageStatus({ image: { image: ids.uid } })).info, {});

  await d.img.pullImage({ image: { image: `${reg.host}/test/named:1` } });
  const named = (await d.img.imageStatus({ image: { image: `${reg.host}/test/named:1` } })).image!;
  assert.equal(named.username, "berth");
  assert.equal(named.uid, undefined);

  const absent = await d.img.imageStatus({ image: { image: `${reg.host}/test/never:1` } });
  assert.equal(absent.image, undefined);
  const absentId = await d.img.imageStatus({ image: { image: `sha256:${"0".repeat(64)}` } });
  assert.equal(absentId.image, undefined);
});

test("RemoveImage: a tag leaves the other tags, the id removes all names, an absent image is fine", async () => {
  await d.img.pullImage({ image: { image: `${reg.host}/test/uid:1` } });
  await d.img.pullImage({ image: { image: `${reg.host}/test/uid:2` } });
  await d.img.removeImage({ image: { image: `${reg.host}/test/uid:1` } });
  const left = (await d.img.imageStatus({ image: { image: ids.uid } })).image!;
  assert.deepEqual(left.repoTags, [`${reg.host}/test/uid:2`]);
  assert.equal((await d.img.imageStatus({ image: { image: `${reg.host}/test/uid:1` } })).image, undefined);
  await d.img.removeImage({ image: { image: ids.uid } });
  assert.equal((await d.img.imageStatus({ image: { image: ids.uid } })).image, undefined);
  assert.equal((await d.img.imageStatus({ image: { image: `${reg.host}/test/uid:2` } })).image, undefined);
  await d.img.removeImage({ image: { image: ids.uid } });
  await d.img.removeImage({ image: { image: `${reg.host}/test/never:1` } });
});

test("ImageFsInfo counts the image store; removing the last image frees its blobs and snapshots", async () => {
  const blobsDir = join(d.root, "content", "blobs", "sha256");
  const usage = async () => {
    const r = await d.img.imageFsInfo({});
    assert.equal(r.imageFilesystems.length, 1);
    assert.deepEqual(
      r.containerFilesystems.map((f) => f.fsId?.mountpoint),
      [r.imageFilesystems[0].fsId?.mountpoint],
    );
    return r.imageFilesystems[0];
  };
  await d.img.pullImage({ image: { image: `${reg.host}/test/gone:1` } });
  const before = await usage();
  assert.ok(before.usedBytes!.value > 0n && before.inodesUsed!.value > 0n);
  assert.ok(before.fsId!.mountpoint.startsWith(d.root), before.fsId!.mountpoint);
  assert.ok(before.timestamp > 0n);
  const manifest = (await d.img.imageStatus({ image: { image: ids.gone } })).image!.repoDigests[0].split("@")[1];
  const has = async (digest: string) => (await readdir(blobsDir)).includes(digest.slice(7));
  assert.ok((await has(ids.gone)) && (await has(manifest)));
  const snapshotsDir = join(d.root, "snapshots", "overlayfs", "snapshots");
  const snapshotsBefore = (await readdir(snapshotsDir)).length;

  await d.img.removeImage({ image: { image: `${reg.host}/test/gone:1` } });
  // No pull runs: the removal waited for the collection, as containerd's synchronous delete does.
  assert.ok(!(await has(ids.gone)) && !(await has(manifest)), "the image's blobs are gone when RemoveImage returns");
  const after = await until(async () => {
    const u = await usage();
    return u.usedBytes!.value < before.usedBytes!.value && u.inodesUsed!.value < before.inodesUsed!.value && u;
  }, "ImageFsInfo to shrink");
  assert.ok(after.usedBytes!.value < before.usedBytes!.value);
  // Its layer's snapshot went with it (nothing else shares that layer).
  assert.ok((await readdir(snapshotsDir)).length < snapshotsBefore, "the image's snapshot was removed");
});

test("a multi-platform index resolves to this host's platform (linux/amd64)", async () => {
  const r = await d.img.pullImage({ image: { image: `${reg.host}/test/multi:1` } });
  assert.equal(r.imageRef, ids.amd64);
  assert.notEqual(r.imageRef, ids.arm64);
});

test("the same image pulled twice at once fetches each blob once (through hosts.toml and its header)", async (t) => {
  const proxy = await startProxy(reg.host);
  const certsd = join(work, "certs.d");
  await mkdir(join(certsd, proxy.host), { recursive: true });
  await writeFile(
    join(certsd, proxy.host, "hosts.toml"),
    `server = "http://${proxy.host}"\n[header]\n  X-Berth-Test = "cri"\n`,
  );
  const pd = await startDaemon({ config: `[registry]\nconfig_path = "${certsd}"\n` });
  t.after(async () => {
    await pd.stop();
    await proxy.stop();
  });
  const ref = `${proxy.host}/test/uid:1`;
  const [a, b] = await Promise.all([
    pd.img.pullImage({ image: { image: ref } }),
    pd.img.pullImage({ image: { image: ref } }),
  ]);
  assert.equal(a.imageRef, ids.uid);
  assert.equal(b.imageRef, ids.uid);
  const blobGets = proxy.requests.filter((r) => r.method === "GET" && r.path.includes("/blobs/"));
  const perBlob = new Map<string, number>();
  for (const r of blobGets) perBlob.set(r.path, (perBlob.get(r.path) ?? 0) + 1);
  assert.equal(perBlob.size, 3, "config and two layers");
  for (const [p, n] of perBlob) assert.equal(n, 1, `${p} fetched ${n} times`);
  for (const r of proxy.requests) assert.equal(r.headers["x-berth-test"], "cri", `no configured header on ${r.path}`);
});
