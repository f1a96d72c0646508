// Layer contents that stress the edges: binary xattrs (security.capability written by Go and
// GNU tar as raw bytes in SCHILY.xattr PAX records) and images of more layers than one
// mount(2) option page can name. Pulled from a real registry, unpacked by both
// snapshotters, and the overlay rootfs mounted for real.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readFile, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openDatabase } from "../../src/metadata/db.js";
import { ImageService } from "../../src/images/service.js";
import { parsePaxRecords, xattrsFromPax } from "../../src/images/tar-pax.js";
import { mountAll, unmountAll } from "../../src/snapshots/index.js";
import * as sys from "../../src/sys/index.js";
import { InvalidArgumentError } from "../../src/util/errors.js";
import { startRegistry, type TestRegistry } from "../helpers/registry.js";
import { buildImage, busyboxEntries, makeLayer, paxHeader, pushLayout, writeOciLayout } from "../helpers/images.js";

// vfs_cap_data revision 2: effective bit set; permitted = CAP_SETUID (7) | CAP_NET_BIND_SERVICE (10).
// Byte 4 is 0x80, which is not valid UTF-8 on its own: a text decode turns it into EF BF BD.
const CAPS = Buffer.from([0x01, 0x00, 0x00, 0x02, 0x80, 0x04, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
const USER_XATTR = Buffer.from([0xff, 0xfe, 0x00, 0x80, 0xc3, 0x28, 0x0a, 0x3d]);
const LAYERS = 120;

let reg: TestRegistry;
let work: string;
const cleanups: (() => Promise<void>)[] = [];

async function newService(snapshotter: string): Promise<{ svc: ImageService; root: string }> {
  const root = await mkdtemp(join(tmpdir(), "berth-layers-with-a-long-state-directory-name-"));
  const db = openDatabase(join(root, "meta.db"));
  const svc = await ImageService.create({ root, db, snapshotter, registry: { configPath: undefined } });
  cleanups.push(async () => {
    db.close();
    await rm(root, { recursive: true, force: true });
  });
  return { svc, root };
}

before(async () => {
  work = await mkdtemp(join(tmpdir(), "berth-layers-src-"));
  reg = await startRegistry();
  const base = await makeLayer(await busyboxEntries());
  const caps = await makeLayer([
    { name: "usr/", type: "directory" },
    { name: "usr/bin/", type: "directory" },
    {
      name: "usr/bin/ping",
      content: "#!/bin/sh\n",
      mode: 0o755,
      xattrs: { "security.capability": CAPS, "user.binary": USER_XATTR },
    },
    { name: "usr/bin/plain", content: "x", xattrs: { "user.text": Buffer.from("héllo") } },
  ]);
  const many = [];
  for (let i = 0; i < LAYERS; i++) {
    many.push(
      await makeLayer([
        { name: "layers/", type: "directory" },
        { name: `layers/${String(i).padStart(3, "0")}`, content: `layer ${i}\n` },
        { name: "top", content: `layer ${i}\n` },
      ]),
    );
  }
  const layout = join(work, "layout");
  await writeOciLayout(layout, [
    { tag: "caps", image: buildImage([base, caps]) },
    { tag: "many", image: buildImage(many) },
  ]);
  await pushLayout(layout, "caps", `${reg.host}/test/caps:1`);
  await pushLayout(layout, "many", `${reg.host}/test/many:1`);
});

after(async () => {
  for (const c of cleanups.reverse()) await c();
  await reg?.stop();
  await rm(work, { recursive: true, force: true });
});

test("PAX records keep binary values byte for byte", () => {
  const block = paxHeader([
    ["SCHILY.xattr.security.capability", CAPS],
    ["path", Buffer.from("ünïcode/name")],
  ]);
  const records = parsePaxRecords(block.subarray(512, 512 + Number.parseInt(block.subarray(124, 135).toString(), 8)));
  assert.deepEqual(records.get("SCHILY.xattr.security.capability"), CAPS);
  assert.equal(records.get("path")?.toString("utf8"), "ünïcode/name");
});

for (const snapshotter of ["native", "overlayfs"]) {
  test(`${snapshotter}: a binary security.capability xattr survives pull and unpack byte for byte`, async (t) => {
    const { svc, root } = await newService(snapshotter);
    const img = await svc.pull(`${reg.host}/test/caps:1`);
    const target = join(root, "rootfs");
    await mkdir(target);
    const mounts = await svc.prepareRootfs(img.id, "ctr-caps");
    mountAll(mounts, target);
    t.after(() => unmountAll(target));
    const ping = join(target, "usr/bin/ping");
    assert.deepEqual(sys.lgetxattr(ping, "security.capability"), CAPS);
    assert.deepEqual(sys.lgetxattr(ping, "user.binary"), USER_XATTR);
    assert.equal(sys.lgetxattr(join(target, "usr/bin/plain"), "user.text")?.toString("utf8"), "héllo");
    // The capability was set after chown/chmod (which clear it) and the mode is intact.
    assert.equal((await readFile(ping, "utf8")).startsWith("#!"), true);
  });
}

test("raw PAX records that disagree with tar-stream's decoded ones fail the entry", () => {
  const raw = new Map([["SCHILY.xattr.user.x", Buffer.from([0x80])]]);
  // What tar-stream decodes from the same bytes: U+FFFD for the lone 0x80.
  assert.deepEqual(xattrsFromPax(raw, { "SCHILY.xattr.user.x": "\ufffd" }, "a"), [["user.x", Buffer.from([0x80])]]);
  // Records of another entry (a framing disagreement) are refused rather than applied.
  assert.throws(() => xattrsFromPax(raw, { "SCHILY.xattr.user.y": "v" }, "a"), InvalidArgumentError);
  assert.throws(() => xattrsFromPax(undefined, { path: "a" }, "a"), InvalidArgumentError);
  assert.deepEqual(xattrsFromPax(undefined, null, "a"), []);
});

test(`overlayfs: an image of ${LAYERS} layers mounts although its lowerdir option passes 4 KiB`, async (t) => {
  const { svc, root } = await newService("overlayfs");
  const img = await svc.pull(`${reg.host}/test/many:1`);
  const mounts = await svc.prepareRootfs(img.id, "ctr-many");
  const lower = mounts[0].options.find((o) => o.startsWith("lowerdir="))!;
  assert.equal(lower.split(":").length, LAYERS);
  assert.ok(mounts[0].options.join(",").length > sys.MOUNT_DATA_MAX, "the option string must exceed one page");
  const target = join(root, "rootfs");
  await mkdir(target);
  mountAll(mounts, target);
  t.after(() => unmountAll(target));
  assert.equal((await readdir(join(target, "layers"))).length, LAYERS);
  assert.equal(await readFile(join(target, "layers/000"), "utf8"), "layer 0\n");
  assert.equal(await readFile(join(target, "layers/119"), "utf8"), "layer 119\n");
  // The last layer is the top one.
  assert.equal(await readFile(join(target, "top"), "utf8"), `layer ${LAYERS - 1}\n`);
  // A read-only view of the same image mounts too.
  const viewTarget = join(root, "view");
  await mkdir(viewTarget);
  mountAll(await svc.prepareRootfs(img.id, "view-many", { readonly: true }), viewTarget);
  t.after(() => unmountAll(viewTarget));
  assert.equal(await readFile(join(viewTarget, "top"), "utf8"), `layer ${LAYERS - 1}\n`);
});
