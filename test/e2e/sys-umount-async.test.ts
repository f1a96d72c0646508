// umount2Async (the native umount2 on the libuv thread pool) and unmountAllAsync, against the
// real kernel (run as root). Every test unmounts and removes what it creates, also on failure.
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import * as sys from "../../src/sys/index.js";
import { unmountAll, unmountAllAsync } from "../../src/snapshots/mount.js";

function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), "berth-umount-async-"));
}

/** How many mounts are stacked on `dir` (field 5 of /proc/self/mountinfo). */
function mountCount(dir: string): number {
  let n = 0;
  for (const line of fs.readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
    if (line && line.split(" ")[4] === dir) n++;
  }
  return n;
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  assert.fail("expected a rejection");
}

test("umount2Async unmounts a tmpfs and resolves to undefined", async () => {
  const dir = tempDir();
  try {
    sys.mount("tmpfs", dir, "tmpfs", sys.MS_NOSUID | sys.MS_NODEV, "size=1m");
    fs.writeFileSync(path.join(dir, "f"), "x");
    assert.equal(mountCount(dir), 1);
    const p = sys.umount2Async(dir, 0);
    assert.ok(p instanceof Promise);
    assert.equal(await p, undefined);
    assert.equal(mountCount(dir), 0);
    assert.deepEqual(fs.readdirSync(dir), []);
  } finally {
    unmountAll(dir);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("umount2Async rejects with the SysError the synchronous umount2 throws", async () => {
  const dir = tempDir();
  let fd: number | undefined;
  try {
    const notMounted = await rejection(sys.umount2Async(dir, 0));
    assert.ok(notMounted instanceof sys.SysError);
    assert.equal(notMounted.code, "EINVAL");
    assert.equal(notMounted.syscall, "umount2");
    assert.equal(notMounted.path, dir);
    assert.equal(notMounted.message, `umount2 ${dir}: EINVAL`);

    const missing = await rejection(sys.umount2Async(path.join(dir, "missing"), 0));
    assert.ok(missing instanceof sys.SysError);
    assert.equal(missing.code, "ENOENT");

    // A file open on the mount keeps it busy: nothing is unmounted.
    sys.mount("tmpfs", dir, "tmpfs", 0, "size=1m");
    fd = fs.openSync(path.join(dir, "held"), "w");
    const busy = await rejection(sys.umount2Async(dir, 0));
    assert.ok(busy instanceof sys.SysError);
    assert.equal(busy.code, "EBUSY");
    assert.equal(busy.message, `umount2 ${dir}: EBUSY`);
    assert.equal(mountCount(dir), 1);

    // Bad arguments throw at the call, as with the synchronous umount2.
    assert.throws(() => sys.umount2Async(dir, "0" as unknown as number), TypeError);
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
    unmountAll(dir);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("unmountAllAsync unmounts stacked mounts; a path with nothing mounted or none at all resolves", async () => {
  const dir = tempDir();
  let fd: number | undefined;
  try {
    sys.mount("tmpfs", dir, "tmpfs", 0, "size=1m");
    sys.mount("tmpfs", dir, "tmpfs", 0, "size=1m");
    assert.equal(mountCount(dir), 2);
    await unmountAllAsync(dir);
    assert.equal(mountCount(dir), 0);
    await unmountAllAsync(dir);
    await unmountAllAsync(path.join(dir, "missing"));

    sys.mount("tmpfs", dir, "tmpfs", 0, "size=1m");
    fd = fs.openSync(path.join(dir, "held"), "w");
    await assert.rejects(unmountAllAsync(dir), (err: unknown) => err instanceof sys.SysError && err.code === "EBUSY");
    assert.equal(mountCount(dir), 1);
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
    unmountAll(dir);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
