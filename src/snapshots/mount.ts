// Mounting a snapshot's mount list onto a target directory, and undoing it.
import * as sys from "../sys/index.js";
import type { Mount } from "./types.js";

/** Mounts `mounts` in order on `target` (the runtime passes them to runc instead, usually). */
export function mountAll(mounts: Mount[], target: string): void {
  for (const m of mounts) {
    const ro = m.options.includes("ro");
    if (m.type === "bind") {
      const rec = m.options.includes("rbind") ? sys.MS_REC : 0;
      sys.mount(m.source, target, null, sys.MS_BIND | rec, null);
      // A bind mount ignores MS_RDONLY on creation; read-only needs a remount.
      if (ro) sys.mount("", target, null, sys.MS_REMOUNT | sys.MS_BIND | sys.MS_RDONLY | rec, null);
    } else {
      const data = m.options.filter((o) => o !== "ro" && o !== "rw").join(",");
      sys.mount(m.source, target, m.type, ro ? sys.MS_RDONLY : 0, data);
    }
  }
}

/** Unmounts everything stacked on `target`; a target that is not a mount point is fine. */
export function unmountAll(target: string): void {
  for (;;) {
    try {
      sys.umount2(target, 0);
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === "EINVAL" || code === "ENOENT") return;
      throw err;
    }
  }
}

/**
 * unmountAll with each umount2 on the thread pool (an overlay's unmount syncs its upper
 * filesystem: milliseconds the event loop goes on meanwhile). Same semantics: everything
 * stacked on `target` is unmounted; a target that is not a mount point, or missing, is fine.
 */
export async function unmountAllAsync(target: string): Promise<void> {
  for (;;) {
    try {
      await sys.umount2Async(target, 0);
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === "EINVAL" || code === "ENOENT") return;
      throw err;
    }
  }
}
