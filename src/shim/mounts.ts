// Mounts the rootfs that Create passes (containerd's snapshotter mounts: overlay, bind)
// on <bundle>/rootfs, and takes them down again, like containerd's mount.All/UnmountAll.
import { mkdir } from "node:fs/promises";

import type { Mount } from "../gen/containerd/types/mount.js";
import * as sys from "../sys/index.js";

const flagOptions: Record<string, { set: boolean; flag: number }> = {
  ro: { set: true, flag: sys.MS_RDONLY },
  rw: { set: false, flag: sys.MS_RDONLY },
  nosuid: { set: true, flag: sys.MS_NOSUID },
  suid: { set: false, flag: sys.MS_NOSUID },
  nodev: { set: true, flag: sys.MS_NODEV },
  dev: { set: false, flag: sys.MS_NODEV },
  noexec: { set: true, flag: sys.MS_NOEXEC },
  exec: { set: false, flag: sys.MS_NOEXEC },
  bind: { set: true, flag: sys.MS_BIND },
  rbind: { set: true, flag: sys.MS_BIND | sys.MS_REC },
  remount: { set: true, flag: sys.MS_REMOUNT },
  private: { set: true, flag: sys.MS_PRIVATE },
  rprivate: { set: true, flag: sys.MS_PRIVATE | sys.MS_REC },
  slave: { set: true, flag: sys.MS_SLAVE },
  rslave: { set: true, flag: sys.MS_SLAVE | sys.MS_REC },
};

function parseOptions(options: string[]): { flags: number; data: string } {
  let flags = 0;
  const data: string[] = [];
  for (const o of options) {
    const f = flagOptions[o];
    if (!f) {
      data.push(o);
      continue;
    }
    flags = f.set ? flags | f.flag : flags & ~f.flag;
  }
  return { flags, data: data.join(",") };
}

export async function mountAll(mounts: Mount[], target: string): Promise<void> {
  await mkdir(target, { recursive: true });
  const done: string[] = [];
  try {
    for (const m of mounts) {
      const { flags, data } = parseOptions(m.options);
      const isBind = (flags & sys.MS_BIND) !== 0;
      sys.mount(m.source, target, isBind ? null : m.type, flags & ~sys.MS_RDONLY, data || null);
      done.push(target);
      // A read-only bind needs a remount: the first bind ignores MS_RDONLY.
      if (isBind && flags & sys.MS_RDONLY) sys.mount("", target, null, flags | sys.MS_REMOUNT, null);
      else if (!isBind && flags & sys.MS_RDONLY)
        sys.mount("", target, null, sys.MS_REMOUNT | sys.MS_RDONLY, data || null);
    }
  } catch (err) {
    unmountAll(target);
    throw err;
  }
}

/** Unmounts everything stacked on target; an unmounted target is fine. */
export function unmountAll(target: string): void {
  for (let i = 0; i < 32; i++) {
    try {
      sys.umount2(target, sys.MNT_DETACH);
    } catch (err) {
      const code = (err as sys.SysError).code;
      if (code === "EINVAL" || code === "ENOENT") return;
      throw err;
    }
  }
}
