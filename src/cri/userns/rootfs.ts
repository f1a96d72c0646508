// The rootfs of a container in a pod with a user namespace. The image's layers are owned by
// host ids (root is 0), which mean nothing inside the pod's namespace: the container's root
// would see its own / owned by nobody and could not write to it. As containerd's overlay
// snapshotter does with idmapped layers, each read-only layer is mounted idmapped through the
// pod's namespace (disk uid 0 shows as the host uid the container's root maps to), and the
// writable upper directory is owned by that host uid, so whatever the container writes is
// stored under its own host ids. overlayfs cannot itself be idmapped, but it can stack on
// idmapped layers (Linux 5.19+). The helper mounts of the layers are detached once the
// overlay holds them: nothing but the one overlay mount stays on the rootfs.

import { chown, mkdir, readdir, rmdir } from "node:fs/promises";
import { join } from "node:path";
import * as sys from "../../sys/index.js";
import { mountAll } from "../../snapshots/mount.js";
import type { Mount } from "../../snapshots/types.js";
import { FailedPreconditionError } from "../../util/errors.js";

/** Where a container's layers are idmapped while its rootfs is mounted: in its bundle. */
export function idmapScratch(bundleDir: string): string {
  return join(bundleDir, "idmap");
}

function option(m: Mount, key: string): string | undefined {
  const o = m.options.find((x) => x.startsWith(`${key}=`));
  return o?.slice(key.length + 1);
}

/**
 * Mounts `mounts` (a snapshot's) on `target` with the layers idmapped through the user
 * namespace file `usernsFile`; `root` is the host uid/gid the container's root maps to, and
 * `scratch` an empty directory for the layers' short-lived idmapped mounts.
 */
export async function mountIdmappedRootfs(
  mounts: Mount[],
  target: string,
  usernsFile: string,
  root: { uid: number; gid: number },
  scratch: string,
): Promise<void> {
  if (mounts.length !== 1) {
    throw new FailedPreconditionError(`an idmapped rootfs needs one snapshot mount, got ${mounts.length}`);
  }
  const m = mounts[0]!;
  if (m.type === "bind") {
    // An image of one empty layer: its own directory, writable, owned by the container's root.
    await chown(m.source, root.uid, root.gid);
    sys.idmapMount(m.source, target, usernsFile);
    return;
  }
  const lower = option(m, "lowerdir");
  const upper = option(m, "upperdir");
  const work = option(m, "workdir");
  if (m.type !== "overlay" || !lower || !upper || !work) {
    throw new FailedPreconditionError(
      `a container in a pod with a user namespace needs the overlayfs snapshotter (got a ${m.type} mount)`,
    );
  }
  await mkdir(scratch, { recursive: true, mode: 0o700 });
  const mapped: string[] = [];
  try {
    for (const [i, dir] of lower.split(":").entries()) {
      const at = join(scratch, String(i));
      await mkdir(at);
      try {
        sys.idmapMount(dir, at, usernsFile);
      } catch (err) {
        await rmdir(at);
        throw err;
      }
      mapped.push(at);
    }
    await chown(upper, root.uid, root.gid);
    const options = m.options.map((o) => (o.startsWith("lowerdir=") ? `lowerdir=${mapped.join(":")}` : o));
    mountAll([{ ...m, options }], target);
  } finally {
    // rmdir, never a recursive rm: a layer still mounted there must not be emptied.
    for (const at of mapped) {
      sys.umount2(at, sys.MNT_DETACH);
      await rmdir(at);
    }
    await rmdir(scratch);
  }
}

/**
 * Removes what a create cut short by a crash may have left in `scratch` (idmapped layers still
 * mounted): each is unmounted, then its directory removed. Must run before anything removes
 * the bundle recursively, which would otherwise reach into an image layer through the mount.
 */
export async function releaseIdmapScratch(scratch: string): Promise<void> {
  let names: string[];
  try {
    names = await readdir(scratch);
  } catch {
    return; // none
  }
  for (const n of names) {
    const at = join(scratch, n);
    try {
      sys.umount2(at, sys.MNT_DETACH);
    } catch {
      // not mounted
    }
    await rmdir(at);
  }
  await rmdir(scratch);
}
