// Atomic file replacement: readers (and a restarted process) see either the old file or the
// whole new one, never a torn write. The data is fsynced before the rename and the directory
// after it, so a power loss cannot leave the new name pointing at an empty inode.
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { open, readdir, rename, rm } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { basename, dirname, join } from "node:path";

function tmpName(path: string): string {
  // Same directory as the target, so rename() never crosses a file system; dot-prefixed so a
  // directory listing (records, CNI conf_dir) skips it.
  return join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`);
}

/**
 * The pid of the process that made `name` as a temporary file of an atomic write (as tmpName
 * names them), or undefined for any other name. A crash mid-write leaves such a file behind;
 * one whose writer is gone is garbage (berthd's start-up sweep removes them).
 */
export function atomicTempWriter(name: string): number | undefined {
  const m = /^\..+\.(\d+)\.[0-9a-f]{12}\.tmp$/.exec(name);
  return m ? Number(m[1]) : undefined;
}

/** The temporary files in `dir` whose writer is another (gone) process; empty when `dir` is missing. */
export async function staleTempFiles(dir: string): Promise<string[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  return names
    .filter((n) => {
      const pid = atomicTempWriter(n);
      return pid !== undefined && pid !== process.pid;
    })
    .map((n) => join(dir, n));
}

/** Writes `data` to `path` atomically and durably (tmp in the same dir, fsync, rename, fsync dir). */
export async function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o644): Promise<void> {
  const tmp = tmpName(path);
  try {
    const fh = await open(tmp, "wx", mode);
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  await syncDir(dirname(path));
}

/**
 * The synchronous twin of writeFileAtomic, for callers that cannot await. With `durable: false`
 * it skips both fsyncs: still atomic against a crash of the writer, but not against a power
 * loss, for state that no longer means anything after a reboot.
 */
export function writeFileAtomicSync(
  path: string,
  data: string | Uint8Array,
  mode = 0o644,
  opts: { durable?: boolean } = {},
): void {
  const durable = opts.durable ?? true;
  const tmp = tmpName(path);
  try {
    const fd = openSync(tmp, "wx", mode);
    try {
      writeFileSync(fd, data);
      if (durable) fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
  if (durable) syncDirSync(dirname(path));
}

/** fsyncs a directory, making renames and unlinks in it durable. */
export async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

function syncDirSync(dir: string): void {
  const fd = openSync(dir, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
