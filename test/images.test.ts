// Pulling from a real registry (docker-registry) into a real content store and snapshotter.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, readdir, rm, lstat, readlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openDatabase, type Db } from "../src/metadata/db.js";
import { ImageService } from "../src/images/service.js";
import { NotFoundError, PermissionDeniedError, UnauthenticatedError } from "../src/util/errors.js";
import { startRegistry, type TestRegistry } from "./helpers/registry.js";
import { buildImage, buildIndex, busyboxEntries, makeLayer, pushLayout, writeOciLayout, sha256 } from "./helpers/images.js";

let reg: TestRegistry;
let authReg: TestRegistry;
let work: string;
const cleanups: (() => Promise<void>)[] = [];
let amd64Id = "";
let arm64Id = "";
let busyboxId = "";

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
  const app = await makeLayer([{ name: "app/", type: "directory" }, { name: "app/hello.txt", content: "hello\n" }], "zstd");
  const busybox = buildImage([base, app], {
    config: { User: "1000", Env: ["PATH=/bin", "GREETING=hi"], Cmd: ["/bin/sh"], WorkingDir: "/app", ExposedPorts: { "80/tcp": {} }, Labels: { a: "b" }, StopSignal: "SIGINT" },
  });
  busyboxId = busybox.config.digest;
  const armLayer = await makeLayer([{ name: "arch", content: "arm64\n" }]);
  const amdLayer = await makeLayer([{ name: "arch", content: "amd64\n" }]);
  const amd = buildImage([amdLayer]);
  const arm = buildImage([armLayer], { architecture: "arm64", variant: "v8" });
  amd64Id = amd.config.digest;
  arm64Id = arm.config.digest;
  const layout = join(work, "layout");
  await writeOciLayout(layout, [
    { tag: "busybox", image: busybox },
    { tag: "multi", image: buildIndex([arm, amd]) },
  ]);
  await pushLayout(layout, "busybox", `${reg.host}/test/busybox:oci`);
  await pushLayout(layout, "busybox", `${reg.host}/test/busybox:docker`, { format: "v2s2" });
  await pushLayout(layout, "multi", `${reg.host}/test/multi:latest`, { all: true });
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
  const lower = mounts[0].options.find((o) => o.startsWith("lowerdir="))!.slice("lowerdir=".length).split(":");
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
  const arm = await svc.pull(`${reg.host}/test/multi:latest`, undefined, { platform: { os: "linux", architecture: "aarch64" } });
  assert.equal(arm.id, arm64Id);
  await assert.rejects(svc.pull(`${reg.host}/test/multi:latest`, undefined, { platform: { os: "linux", architecture: "s390x" } }), NotFoundError);
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
  const { svc } = await newService();
  const [x, y] = await Promise.all([svc.pull(`${reg.host}/test/busybox:oci`), svc.pull(`${reg.host}/test/busybox:oci`)]);
  assert.equal(x.id, y.id);
  const blobs = await readdir(join(svc.content.root, "blobs/sha256"));
  assert.equal(blobs.length, 5); // index-less manifest, config, 2 layers... plus manifest
  void sha256;
});
