// Network namespace lifecycle for pod sandboxes: a namespace is created once per pod and
// pinned by bind-mounting its nsfs inode on a file (<dir>/<name>), the same layout as
// `ip netns` and containerd. The pinned file is what CNI plugins get as CNI_NETNS and
// what the OCI spec's network namespace path points at, so the namespace outlives the
// processes in it until removeNetns unmounts it.

import { mkdir, readdir, statfs, unlink } from "node:fs/promises";
import { join } from "node:path";
import { MNT_DETACH, netnsCreate, umount2 } from "../sys/index.js";
import { AlreadyExistsError, InternalError, InvalidArgumentError } from "../util/errors.js";

/** statfs f_type of a bind-mounted namespace file (linux/magic.h NSFS_MAGIC). */
const NSFS_MAGIC = 0x6e736673;
/** Before Linux 3.19 namespace files lived on procfs. */
const PROC_SUPER_MAGIC = 0x9fa0;

export interface NetnsInfo {
  name: string;
  path: string;
  /** false for a leftover file whose namespace is no longer mounted (a crash mid-create or mid-remove). */
  mounted: boolean;
}

function checkName(name: string): void {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,250}$/.test(name)) {
    throw new InvalidArgumentError(`invalid network namespace name ${JSON.stringify(name)}`);
  }
}

/** The pinned path of namespace `name` under `dir`. */
export function netnsPath(dir: string, name: string): string {
  checkName(name);
  return join(dir, name);
}

/** True when `path` is a mounted namespace file (not a plain leftover file, not missing). */
export async function isNetnsMounted(path: string): Promise<boolean> {
  try {
    const st = await statfs(path);
    return st.type === NSFS_MAGIC || st.type === PROC_SUPER_MAGIC;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw err;
  }
}

/**
 * Creates a new network namespace pinned at <dir>/<name> and returns that path (made by
 * `make` when given, e.g. owned by a pod's user namespace).
 * Its only interface is a down `lo` (NetworkManager brings it up: sys netnsLoopbackUp).
 */
export async function createNetns(dir: string, name: string, make?: (path: string) => Promise<void>): Promise<string> {
  const path = netnsPath(dir, name);
  await mkdir(dir, { recursive: true, mode: 0o711 });
  if (await isNetnsMounted(path)) {
    throw new AlreadyExistsError(`network namespace ${path} already exists`);
  }
  try {
    // The binding unshares in a thread of its own, so the event loop's thread never
    // leaves the host namespace; the file is created if missing.
    if (make) await make(path);
    else netnsCreate(path);
  } catch (err) {
    await removeNetns(path).catch(() => undefined);
    throw new InternalError(`create network namespace ${path}: ${(err as Error).message}`, { cause: err });
  }
  return path;
}

/**
 * Unmounts and deletes a pinned namespace. Safe to call when it is already gone or was
 * only half created. The namespace itself dies when its last process exits.
 */
export async function removeNetns(path: string): Promise<void> {
  // A path can carry stacked mounts if something went wrong before; unmount them all.
  for (let i = 0; i < 8 && (await isNetnsMounted(path)); i++) {
    try {
      umount2(path, MNT_DETACH);
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if (code === "ENOENT" || code === "EINVAL") break;
      throw new InternalError(`unmount network namespace ${path}: ${(err as Error).message}`, { cause: err });
    }
  }
  try {
    await unlink(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return;
    // EBUSY means a mount is still there (e.g. one we could not see): report it.
    throw new InternalError(`remove network namespace file ${path}: ${(err as Error).message}`, { cause: err });
  }
}

/** Every namespace file under `dir`, mounted or left over; empty when `dir` does not exist. */
export async function listNetns(dir: string): Promise<NetnsInfo[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
  const out: NetnsInfo[] = [];
  for (const name of names.sort()) {
    if (name.startsWith(".")) continue;
    const path = join(dir, name);
    out.push({ name, path, mounted: await isNetnsMounted(path) });
  }
  return out;
}
