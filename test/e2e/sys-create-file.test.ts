// sys.createFile (native/sys/files.c) against the real kernel, as root: the file with its whole
// content, owner, mode and times from one call; never through or over what is at the path.
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import * as sys from "../../src/sys/index.js";

function withDir(fn: (dir: string) => Promise<void>): () => Promise<void> {
  return async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "berth-createfile-"));
    try {
      await fn(dir);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  };
}

test(
  "creates the file with its content, owner, mode (setuid kept) and times",
  withDir(async (dir) => {
    const p = path.join(dir, "f");
    const data = Buffer.from("hello\n".repeat(1000));
    const mtime = new Date("2020-02-02T02:02:02.123Z");
    await sys.createFile(p, data, 0o4750, 1234, 5678, mtime);
    const st = fs.lstatSync(p);
    assert.ok(fs.readFileSync(p).equals(data));
    assert.deepEqual([st.mode & 0o7777, st.uid, st.gid], [0o4750, 1234, 5678]);
    assert.equal(st.mtime.getTime(), mtime.getTime());
    assert.equal(st.atime.getTime(), mtime.getTime());
    // an empty file too
    await sys.createFile(path.join(dir, "empty"), Buffer.alloc(0), 0o644, 0, 0, new Date(0));
    assert.equal(fs.statSync(path.join(dir, "empty")).size, 0);
  }),
);

test(
  "refuses with EEXIST whatever is at the path: a file, or a symlink it must not follow",
  withDir(async (dir) => {
    const target = path.join(dir, "target");
    fs.writeFileSync(target, "original");
    const link = path.join(dir, "link");
    fs.symlinkSync(target, link);
    for (const p of [target, link]) {
      await assert.rejects(sys.createFile(p, Buffer.from("x"), 0o644, 0, 0, new Date()), (err: sys.SysError) => {
        assert.equal(err.code, "EEXIST");
        assert.equal(err.syscall, "open");
        return true;
      });
    }
    assert.equal(fs.readFileSync(target, "utf8"), "original");
  }),
);

test(
  "reports the failing call, and refuses bad arguments before touching the disk",
  withDir(async (dir) => {
    await assert.rejects(
      sys.createFile(path.join(dir, "missing", "f"), Buffer.from("x"), 0o644, 0, 0, new Date()),
      (err: sys.SysError) => err.code === "ENOENT" && err.syscall === "open",
    );
    const p = path.join(dir, "g");
    assert.throws(() => sys.createFile(p, Buffer.from("x"), 0o644, -1, 0, new Date()), RangeError);
    assert.throws(() => sys.createFile(p, Buffer.from("x"), 0o644, 0, 2 ** 32 - 1, new Date()), RangeError);
    assert.throws(() => sys.createFile(p, "x" as unknown as Buffer, 0o644, 0, 0, new Date()), TypeError);
    assert.equal(fs.existsSync(p), false);
  }),
);
