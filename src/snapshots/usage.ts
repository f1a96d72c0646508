// Disk usage of a directory tree, counted like du: every inode once, allocated blocks.
import { lstat, readdir } from "node:fs/promises";
import { join } from "node:path";
import type { Usage } from "./types.js";

export async function diskUsage(dir: string): Promise<Usage> {
  const seen = new Set<number>();
  let size = 0;
  async function walk(p: string): Promise<void> {
    const st = await lstat(p, { bigint: false });
    if (!seen.has(st.ino)) {
      seen.add(st.ino);
      size += st.blocks * 512;
    }
    if (st.isDirectory()) {
      for (const name of await readdir(p)) await walk(join(p, name));
    }
  }
  try {
    await walk(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return { size: 0, inodes: 0 };
    throw err;
  }
  return { size, inodes: seen.size };
}
