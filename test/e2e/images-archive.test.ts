// Offline images: OCI layout and docker-archive import, rootfs import, export round trip.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdtemp, readFile, readlink, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { promisify } from "node:util";
import { openDatabase } from "../../src/metadata/db.js";
import { ImageService } from "../../src/images/service.js";
import { exportArchive, importArchive, importRootfs } from "../../src/images/archive.js";
import { InvalidArgumentError } from "../../src/util/errors.js";
import { buildImage, busyboxEntries, makeLayer, tarOf, writeOciLayout } from "../helpers/images.js";

const run = promisify(execFile);
let work: string;
let layout: string;
let imageId: string;
const cleanups: (() => Promise<void>)[] = [];

async function newService(): Promise<ImageService> {
  const root = await mkdtemp(join(tmpdir(), "berth-archive-"));
  const db = openDatabase(join(root, "meta.db"));
  cleanups.push(async () => {
    db.close();
    await rm(root, { recursive: true, force: true });
  });
  return ImageService.create({ root, db, snapshotter: "native", registry: { configPath: undefined } });
}

before(async () => {
  work = await mkdtemp(join(tmpdir(), "berth-archive-src-"));
  layout = join(work, "layout");
  const base = await makeLayer(await busyboxEntries());
  const top = await makeLayer([{ name: "etc/motd", content: "offline\n" }]);
  const img = buildImage([base, top], { config: { Cmd: ["/bin/sh", "-c", "cat /etc/motd"], User: "berth" } });
  imageId = img.config.digest;
  await writeOciLayout(layout, [{ tag: "v1", image: img }]);
  await run("tar", ["-C", layout, "-cf", join(work, "oci.tar"), "."]);
  await run("skopeo", [
    "--insecure-policy",
    "copy",
    "-q",
    `oci:${layout}:v1`,
    `docker-archive:${join(work, "docker.tar")}:example.com/offline/app:v1`,
  ]);
});

after(async () => {
  for (const c of cleanups.reverse()) await c();
  await rm(work, { recursive: true, force: true });
});

async function rootfsOf(svc: ImageService, id: string, key: string): Promise<string> {
  const m = await svc.prepareRootfs(id, key);
  return m[0].source;
}

test("imports an OCI image layout archive", async () => {
  const svc = await newService();
  const [img] = await importArchive(svc, createReadStream(join(work, "oci.tar")), {
    baseName: "example.com/offline/app",
  });
  assert.equal(img.id, imageId);
  assert.deepEqual(img.repoTags, ["example.com/offline/app:v1"]);
  assert.equal(img.config.User, "berth");
  const rootfs = await rootfsOf(svc, img.id, "c1");
  assert.equal(await readFile(join(rootfs, "etc/motd"), "utf8"), "offline\n");
  assert.equal(await readlink(join(rootfs, "bin/sh")), "busybox");
});

test("imports a docker save archive (written by skopeo)", async () => {
  const svc = await newService();
  const [img] = await importArchive(svc, createReadStream(join(work, "docker.tar")));
  assert.equal(img.id, imageId);
  assert.deepEqual(img.repoTags, ["example.com/offline/app:v1"]);
  const rootfs = await rootfsOf(svc, img.id, "c1");
  assert.equal(await readFile(join(rootfs, "etc/motd"), "utf8"), "offline\n");
});

test("imports a rootfs tarball as a one-layer image", async () => {
  const svc = await newService();
  const tarball = (await makeLayer(await busyboxEntries(), "gzip")).blob;
  const img = await importRootfs(svc, Readable.from([tarball]), "local/rootfs:1", { config: { Cmd: ["/bin/sh"] } });
  assert.deepEqual(img.repoTags, ["docker.io/local/rootfs:1"]);
  assert.deepEqual(img.config.Cmd, ["/bin/sh"]);
  assert.equal(img.architecture, "amd64");
  const rootfs = await rootfsOf(svc, img.id, "c1");
  assert.equal((await readFile(join(rootfs, "bin/busybox"))).length, (await readFile("/bin/busybox")).length);
  const plain = await tarOf([{ name: "hello", content: "hi" }]);
  const img2 = await importRootfs(svc, Readable.from([plain]), "local/plain");
  assert.deepEqual(img2.repoTags, ["docker.io/local/plain:latest"]);
});

test("export writes an archive that skopeo reads and berth imports back", async () => {
  const svc = await newService();
  await importArchive(svc, createReadStream(join(work, "oci.tar")), { baseName: "example.com/offline/app" });
  const out = join(work, "export.tar");
  await exportArchive(svc, ["example.com/offline/app:v1"], createWriteStream(out));
  const { stdout } = await run("skopeo", ["--insecure-policy", "inspect", "--config", `oci-archive:${out}:v1`]);
  assert.equal((JSON.parse(stdout) as { config: { User: string } }).config.User, "berth");
  await run("skopeo", ["--insecure-policy", "inspect", `docker-archive:${out}`]);
  const svc2 = await newService();
  const [img] = await importArchive(svc2, createReadStream(out));
  assert.equal(img.id, imageId);
  assert.deepEqual(img.repoTags, ["example.com/offline/app:v1"]);
});

test("an archive whose blob does not match its digest is refused", async () => {
  const svc = await newService();
  const bad = await tarOf([
    { name: "oci-layout", content: '{"imageLayoutVersion":"1.0.0"}' },
    {
      name: "index.json",
      content: JSON.stringify({
        schemaVersion: 2,
        manifests: [
          { mediaType: "application/vnd.oci.image.manifest.v1+json", digest: `sha256:${"a".repeat(64)}`, size: 2 },
        ],
      }),
    },
    { name: `blobs/sha256/${"a".repeat(64)}`, content: "{}" },
  ]);
  await assert.rejects(importArchive(svc, Readable.from([bad])), /digest mismatch/);
  await assert.rejects(
    importArchive(svc, Readable.from([await tarOf([{ name: "x", content: "" }])])),
    InvalidArgumentError,
  );
  assert.deepEqual(await svc.list(), []);
});
