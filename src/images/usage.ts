// What the image stores take on disk (CRI ImageFsInfo): the content store's blobs, and the
// snapshots of the service's snapshotter.
import { join } from "node:path";

import type { Snapshotter, Usage } from "../snapshots/types.js";
import type { ContentStore } from "./content-store.js";

export interface FsUsage {
  content: Usage & { path: string };
  snapshots: Usage & { path: string };
}

/** Bytes and inodes of the content store and of every snapshot under `<root>/snapshots/<name>`. */
export async function fsUsage(content: ContentStore, snapshotter: Snapshotter, root: string): Promise<FsUsage> {
  let size = 0;
  let inodes = 0;
  for (const s of snapshotter.list()) {
    const u = await snapshotter.usage(s.key);
    size += u.size;
    inodes += u.inodes;
  }
  const c = await content.usage();
  return {
    content: { path: content.root, ...c },
    snapshots: { path: join(root, "snapshots", snapshotter.name), size, inodes },
  };
}
