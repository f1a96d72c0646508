// Layer application: file types and metadata, and confinement against hostile layers.
import { test, beforeEach, afterEach } from "node:test";
import assert from "node:assert/strict";
import { lstat, mkdir, mkdtemp, readFile, readdir, readlink, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { applyLayer, type WhiteoutMode } from "../../src/images/unpack.js";
import { InvalidArgumentError } from "../../src/util/errors.js";
import * as sys from "../../src/sys/index.js";
import { makeLayer, tarOf, type EntrySpec } from "../helpers/images.js";

let root: string;
let outside: string; // sentinel directory: nothing may appear here

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), "berth-unpack-root-"));
  outside = await mkdtemp(join(tmpdir(), "berth-unpack-outside-"));
  await writeFile(join(outside, "secret"), "original\n");
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
  await rm(outside, { recursive: true, force: true });
});

async function apply(
  entries: EntrySpec[],
  whiteouts: WhiteoutMode = "native",
  compression: "gzip" | "zstd" | "none" = "gzip",
) {
  const layer = await makeLayer(entries, compression);
  return applyLayer(Readable.from([layer.blob]), root, { whiteouts, expectedDiffId: layer.diffId });
}

async function assertOutsideUntouched(): Promise<void> {
  assert.deepEqual(await readdir(outside), ["secret"]);
  assert.equal(await readFile(join(outside, "secret"), "utf8"), "original\n");
}

test("applies files, dirs, symlinks, hard links, devices, fifos, modes, owners, times and xattrs", async () => {
  const mtime = new Date("2020-02-02T02:02:02Z");
  for (const compression of ["gzip", "zstd", "none"] as const) {
    await rm(root, { recursive: true, force: true });
    await mkdir(root);
    const r = await apply(
      [
        { name: "usr/", type: "directory", mode: 0o755, mtime },
        { name: "usr/bin/su", content: "#!/bin/sh\n", mode: 0o4755, uid: 0, gid: 0 },
        { name: "usr/share/", type: "directory", mode: 0o1777 },
        {
          name: "usr/owned",
          content: "x",
          uid: 1234,
          gid: 5678,
          mode: 0o640,
          mtime,
          pax: { "SCHILY.xattr.user.test": "value" },
        },
        { name: "usr/link", type: "symlink", linkname: "/usr/bin/su" },
        { name: "usr/hard", type: "link", linkname: "usr/owned" },
        { name: "dev/null", type: "character-device", devmajor: 1, devminor: 3, mode: 0o666 },
        { name: "dev/loop0", type: "block-device", devmajor: 7, devminor: 0, mode: 0o660 },
        { name: "run/fifo", type: "fifo", mode: 0o600 },
      ],
      "native",
      compression,
    );
    assert.match(r.diffId, /^sha256:/);
    assert.equal((await lstat(join(root, "usr/bin/su"))).mode & 0o7777, 0o4755);
    assert.equal((await lstat(join(root, "usr/share"))).mode & 0o7777, 0o1777);
    const owned = await lstat(join(root, "usr/owned"));
    assert.equal(owned.uid, 1234);
    assert.equal(owned.gid, 5678);
    assert.equal(owned.mode & 0o7777, 0o640);
    assert.equal(owned.mtime.getTime(), mtime.getTime());
    assert.equal((await lstat(join(root, "usr"))).mtime.getTime(), mtime.getTime());
    assert.equal(sys.lgetxattr(join(root, "usr/owned"), "user.test")?.toString(), "value");
    assert.equal(await readlink(join(root, "usr/link")), "/usr/bin/su");
    assert.equal((await lstat(join(root, "usr/hard"))).ino, owned.ino);
    const nul = await lstat(join(root, "dev/null"));
    assert.ok(nul.isCharacterDevice());
    assert.equal(nul.rdev, sys.makedev(1, 3));
    assert.ok((await lstat(join(root, "dev/loop0"))).isBlockDevice());
    assert.ok((await lstat(join(root, "run/fifo"))).isFIFO());
  }
});

test("overlay whiteouts: .wh.NAME becomes a 0/0 char device, .wh..wh..opq an opaque xattr", async () => {
  await apply(
    [
      { name: "d/", type: "directory" },
      { name: "d/.wh..wh..opq" },
      { name: "d/new", content: "n" },
      { name: ".wh.gone" },
    ],
    "overlay",
  );
  const wh = await lstat(join(root, "gone"));
  assert.ok(wh.isCharacterDevice());
  assert.equal(wh.rdev, 0);
  assert.equal(sys.lgetxattr(join(root, "d"), "trusted.overlay.opaque")?.toString(), "y");
  assert.deepEqual(await readdir(join(root, "d")), ["new"]);
});

test("native whiteouts delete files and make opaque directories drop older content", async () => {
  await apply([
    { name: "d/", type: "directory" },
    { name: "d/old", content: "o" },
    { name: "d/sub/", type: "directory" },
    { name: "d/sub/deep", content: "o" },
    { name: "f", content: "f" },
  ]);
  await apply([
    { name: "d/", type: "directory" },
    { name: "d/.wh..wh..opq" },
    { name: "d/sub/fresh", content: "n" },
    { name: ".wh.f" },
  ]);
  assert.deepEqual(await readdir(root), ["d"]);
  assert.deepEqual(await readdir(join(root, "d")), ["sub"]);
  assert.deepEqual(await readdir(join(root, "d/sub")), ["fresh"]);
});

test("a diff ID mismatch fails the apply", async () => {
  const layer = await makeLayer([{ name: "a", content: "a" }]);
  await assert.rejects(
    applyLayer(Readable.from([layer.blob]), root, { whiteouts: "native", expectedDiffId: `sha256:${"0".repeat(64)}` }),
    /diff ID mismatch/,
  );
});

// ---- hostile layers: each is refused or confined, and the sentinel dir is untouched

test("../escape is refused", async () => {
  await assert.rejects(apply([{ name: "../escape", content: "x" }]), InvalidArgumentError);
  await assert.rejects(apply([{ name: "a/../../escape", content: "x" }]), InvalidArgumentError);
  await assert.rejects(
    apply([{ name: `../${outside.split("/").pop()}/secret`, content: "pwned" }]),
    InvalidArgumentError,
  );
  await assertOutsideUntouched();
  assert.ok(!(await readdir(join(root, ".."))).includes("escape"));
});

test("absolute names are confined to the root", async () => {
  await apply([
    { name: `${outside}/secret`, content: "pwned" },
    { name: `${outside}/new`, content: "x" },
  ]);
  await assertOutsideUntouched();
  assert.equal(await readFile(join(root, outside, "secret"), "utf8"), "pwned");
});

test("a write through a symlinked parent stays inside the root", async () => {
  await apply([
    { name: "a", type: "symlink", linkname: outside },
    { name: "a/x", content: "pwned" },
    { name: "a/secret", content: "pwned" },
    { name: "rel", type: "symlink", linkname: "../../../../../../../../.." + outside },
    { name: "rel/y", content: "pwned" },
  ]);
  await assertOutsideUntouched();
  assert.equal(await readFile(join(root, outside, "x"), "utf8"), "pwned");
  assert.equal(await readFile(join(root, outside, "y"), "utf8"), "pwned");
  // symlink created across layers: the next layer writes through it, still confined
  await apply([{ name: "a/z", content: "pwned" }]);
  await assertOutsideUntouched();
});

test("a file replaces what is at its name: a file, a symlink to outside, a directory, and in a later layer", async () => {
  const mtime = new Date("2021-03-04T05:06:07Z");
  await apply([
    { name: "f", content: "old" },
    { name: "f", content: "new", mode: 0o640, uid: 7, gid: 8, mtime },
    { name: "l", type: "symlink", linkname: join(outside, "secret") },
    { name: "l", content: "mine" },
    { name: "d/", type: "directory" },
    { name: "d/child", content: "gone" },
    { name: "d", content: "now a file" },
    { name: "g", content: "layer 1" },
  ]);
  await assertOutsideUntouched();
  assert.equal(await readFile(join(root, "f"), "utf8"), "new");
  const f = await lstat(join(root, "f"));
  assert.deepEqual([f.mode & 0o7777, f.uid, f.gid, f.mtime.getTime()], [0o640, 7, 8, mtime.getTime()]);
  assert.ok((await lstat(join(root, "l"))).isFile(), "the symlink was replaced, not followed");
  assert.equal(await readFile(join(root, "l"), "utf8"), "mine");
  assert.equal(await readFile(join(root, "d"), "utf8"), "now a file");
  // native snapshots apply the next layer onto a copy of the tree: the file is there already
  await apply([{ name: "g", content: "layer 2", mode: 0o600 }]);
  assert.equal(await readFile(join(root, "g"), "utf8"), "layer 2");
  assert.equal((await lstat(join(root, "g"))).mode & 0o7777, 0o600);
});

test("a file larger than the in-memory limit streams to disk with its mode, owner and times", async () => {
  const mtime = new Date("2019-01-01T00:00:00Z");
  const big = Buffer.alloc((1 << 20) + 4097);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7919) & 0xff;
  await apply([
    { name: "small", content: "x", mode: 0o4755, uid: 3, gid: 4, mtime },
    { name: "big", content: big, mode: 0o2711, uid: 5, gid: 6, mtime },
    { name: "big", content: big.subarray(0, 10) }, // replaced again, now small
    { name: "big2", content: big, mode: 0o600, mtime },
  ]);
  const st = await lstat(join(root, "big2"));
  assert.equal(st.size, big.length);
  assert.ok((await readFile(join(root, "big2"))).equals(big));
  assert.deepEqual([st.mode & 0o7777, st.mtime.getTime()], [0o600, mtime.getTime()]);
  assert.ok((await readFile(join(root, "big"))).equals(big.subarray(0, 10)));
  const small = await lstat(join(root, "small"));
  assert.deepEqual([small.mode & 0o7777, small.uid, small.gid], [0o4755, 3, 4]);
});

test("hard links to files outside the root are refused", async () => {
  await assert.rejects(apply([{ name: "h", type: "link", linkname: `${outside}/secret` }]), InvalidArgumentError);
  await assert.rejects(
    apply([{ name: "h", type: "link", linkname: `../${outside.split("/").pop()}/secret` }]),
    InvalidArgumentError,
  );
  await assert.rejects(
    apply([
      { name: "p", type: "symlink", linkname: outside },
      { name: "h", type: "link", linkname: "p/secret" },
    ]),
    InvalidArgumentError,
  );
  await assertOutsideUntouched();
  const h = await lstat(join(root, "h")).catch(() => null);
  assert.equal(h, null);
});

test("a hard link to a symlink pointing outside gives no write access outside", async () => {
  await apply([
    { name: "s", type: "symlink", linkname: `${outside}/secret` },
    { name: "h", type: "link", linkname: "s" },
    { name: "h", content: "pwned" },
    { name: "s2", type: "symlink", linkname: `${outside}/secret` },
    { name: "s2", content: "pwned" },
    { name: "d", type: "symlink", linkname: outside },
    { name: "d2", type: "link", linkname: "d" },
    { name: "d2/secret", content: "pwned" },
  ]);
  await assertOutsideUntouched();
  assert.equal(await readFile(join(root, "h"), "utf8"), "pwned");
  assert.ok((await lstat(join(root, "s"))).isSymbolicLink());
});

test("over-long names are refused", async () => {
  await assert.rejects(apply([{ name: "x".repeat(300), content: "a" }]), InvalidArgumentError);
  await assert.rejects(apply([{ name: "a/".repeat(2100) + "b", content: "a" }]), InvalidArgumentError);
  await assertOutsideUntouched();
});

test("tar metadata outside the root is never chmod/chowned through a symlink", async () => {
  await apply([
    { name: "s", type: "symlink", linkname: outside },
    { name: "s", type: "directory", mode: 0o777, uid: 4242 },
  ]);
  const st = await lstat(outside);
  assert.notEqual(st.uid, 4242);
  assert.notEqual(st.mode & 0o777, 0o777);
  assert.ok((await lstat(join(root, "s"))).isDirectory());
  await assertOutsideUntouched();
  void tarOf;
});
