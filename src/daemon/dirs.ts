// Creates berthd's directories with tight permissions. Root holds image layers and the
// metadata database: nobody but root reads it. An existing directory with looser bits than
// wanted is tightened, because a permissive root silently exposes every container's files.

import { chmodSync, mkdirSync, statfsSync, statSync } from "node:fs";
import type { Logger } from "../util/log.js";

export function ensurePrivateDir(path: string, mode: number, log: Logger): void {
  mkdirSync(path, { recursive: true, mode });
  const st = statSync(path);
  if (!st.isDirectory()) throw new Error(`${path} exists and is not a directory`);
  const current = st.mode & 0o7777;
  if (current !== mode) {
    // mkdir's mode is filtered by the umask, and an old directory may be looser: set it exactly.
    chmodSync(path, mode);
    if ((current & ~mode) !== 0) {
      log.info({ path, from: current.toString(8), to: mode.toString(8) }, "tightened directory permissions");
    }
  }
}

/** statfs(2) f_type of tmpfs and ramfs (linux/magic.h). */
const MEMORY_FS = new Set([0x01021994, 0x858458f6]);

/**
 * Whether `path` is on a memory file system (tmpfs, ramfs); undefined when statfs fails.
 */
export function onMemoryFs(path: string): boolean | undefined {
  try {
    return MEMORY_FS.has(statfsSync(path).type);
  } catch {
    return undefined;
  }
}

/**
 * Says once, at start, when the state dir is on a disk. It holds what lives only as long as the
 * tasks it describes (bundles, stdio fifos, the shims' and runc's records), which a node keeps
 * under /run, a tmpfs. On a disk every pod writes, and later deletes, some fifty files there:
 * slower, and on ext4 without a journal much slower once many pods come and go (its inode
 * allocator passes over each inode deleted in the last half minute or more); berthd's side by
 * side benchmark measured a burst of 20 pods at about 1.3x its time with the state on a tmpfs.
 */
export function noteStateFileSystem(path: string, log: Logger): void {
  if (onMemoryFs(path) === false) {
    log.warn(
      { path },
      "the state dir is not on a tmpfs: runtime state belongs under /run (a tmpfs on a node); on a disk every pod start and stop is slower",
    );
  }
}
