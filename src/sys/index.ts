// The one place berth makes system calls Node.js lacks (DESIGN.md principle 7).
// Every function is synchronous but umount2Async (the calls are fast; a blocking waitpid without WNOHANG
// or a slow connectInNetns does block the event loop, so callers choose their options
// accordingly) and throws SysError carrying the errno name (e.g. "ENOENT") in `code`,
// like Node's own fs errors, so callers can branch on err.code.
//
// The native binding lives in native/berth_sys.c, built by node-gyp (`npm run build:native`,
// also run by `npm ci`) into build/Release/berth_sys.node. It is loaded on first use, so
// importing this module never fails on a machine without the build.
import { createRequire } from "node:module";

export class SysError extends Error {
  constructor(
    readonly syscall: string,
    readonly code: string,
    readonly errno: number,
    readonly path?: string,
  ) {
    super(`${syscall}${path ? ` ${path}` : ""}: ${code}`);
    this.name = "SysError";
  }
}

/** mount flags (linux/mount.h) */
export const MS_RDONLY = 0x1;
export const MS_NOSUID = 0x2;
export const MS_NODEV = 0x4;
export const MS_NOEXEC = 0x8;
export const MS_REMOUNT = 0x20;
export const MS_BIND = 0x1000;
export const MS_MOVE = 0x2000;
export const MS_REC = 0x4000;
export const MS_PRIVATE = 0x40000;
export const MS_SLAVE = 0x80000;
export const MS_SHARED = 0x100000;
export const MS_UNBINDABLE = 0x20000;
/** umount2 flags */
export const MNT_FORCE = 0x1;
export const MNT_DETACH = 0x2;
/** namespace flags */
export const CLONE_NEWNS = 0x00020000;
export const CLONE_NEWUTS = 0x04000000;
export const CLONE_NEWIPC = 0x08000000;
export const CLONE_NEWNET = 0x40000000;
export const CLONE_NEWPID = 0x20000000;
/** waitpid options */
export const WNOHANG = 1;
/** mknod file types */
export const S_IFCHR = 0o020000;
export const S_IFBLK = 0o060000;
export const S_IFIFO = 0o010000;

export interface WaitResult {
  /** 0 when WNOHANG and nothing has changed */
  pid: number;
  exited: boolean;
  /** exit code when exited */
  exitCode: number;
  signaled: boolean;
  /** terminating signal number when signaled */
  signal: number;
}

/** The native module's shape (native/berth_sys.c). */
export interface Binding {
  setErrorClass(ctor: typeof SysError): void;
  mount(source: string | null, target: string, fstype: string | null, flags: number, data: string | null): void;
  umount2(target: string, flags: number): void;
  umount2Async(target: string, flags: number): Promise<void>;
  syncfsAsync(path: string): Promise<void>;
  createFileAsync(
    path: string,
    data: Buffer,
    mode: number,
    uid: number,
    gid: number,
    mtimeSec: number,
    mtimeNsec: number,
  ): Promise<void>;
  makedev(major: number, minor: number): number;
  mknod(path: string, mode: number, dev: number): void;
  setxattr(path: string, name: string, value: Buffer): void;
  lsetxattr(path: string, name: string, value: Buffer): void;
  getxattr(path: string, name: string): Buffer | null;
  lgetxattr(path: string, name: string): Buffer | null;
  llistxattr(path: string): string[];
  prctlSetChildSubreaper(on: boolean): void;
  setns(fd: number, nstype: number): void;
  unshare(flags: number): void;
  waitpid(pid: number, options: number): WaitResult;
  pidfdOpen(pid: number): number;
  flock(fd: number, operation: number): void;
  spawn(
    file: string,
    argv: string[],
    envp: string[] | null,
    cwd: string | null,
    stdio: number[],
    setsid: boolean,
    onExit: (code: number, signal: number, errno: number) => void,
  ): { pid: number; fds: number[]; handle: object };
  spawnRef(handle: object, on: boolean): void;
  netnsCreate(path: string): void;
  connectInNetns(nsPath: string, host: string, port: number, timeoutMs: number | null): number;
  netnsLoopbackUp(nsPath: string): void;
  fsmount(fstype: string, target: string, attrFlags: number, params: [string, string | null][]): void;
  idmapMount(source: string, target: string, usernsPath: string): void;
  probeRecursiveReadOnly(dir: string): string | null;
  probeUsernsHostSys(hostId: number, size: number, submount: string, readable: string): string | null;
  mallocTrim(): boolean;
}

// From dist/src/sys/index.js the package root is three levels up; from src/sys/index.ts
// (run by a TypeScript loader) it is two.
const candidates = ["../../../build/Release/berth_sys.node", "../../build/Release/berth_sys.node"];
let binding: Binding | undefined;

/** The loaded binding (for src/sys/spawn.ts, which wraps spawn in a ChildProcess-like shape). */
export function native(): Binding {
  if (binding) return binding;
  const require = createRequire(import.meta.url);
  let lastError: unknown;
  for (const rel of candidates) {
    try {
      const loaded = require(rel) as Binding;
      loaded.setErrorClass(SysError);
      binding = loaded;
      return loaded;
    } catch (err) {
      lastError = err;
      if ((err as NodeJS.ErrnoException).code !== "MODULE_NOT_FOUND") break;
    }
  }
  throw new Error(`berth native binding not loadable (run \`npm run build:native\`): ${String(lastError)}`, {
    cause: lastError,
  });
}

/** mount(2). `fstype` null for bind mounts and remounts; `data` is the comma-separated option string. */
export function mount(
  source: string,
  target: string,
  fstype: string | null,
  flags: number,
  data?: string | null,
): void {
  if (data && Buffer.byteLength(data) >= MOUNT_DATA_MAX) {
    // mount(2) copies one page of data: longer options would be cut off mid-path. An overlay
    // of many layers goes through the new mount API instead (one fsconfig per lowerdir); a
    // remount ignores overlayfs' options anyway (legacy API), so it needs none.
    if (flags & MS_REMOUNT) data = null;
    else if (fstype === "overlay") return mountOverlayParams(source, target, flags, data);
  }
  native().mount(source, target, fstype, flags, data ?? null);
}

/** mount(2)'s data limit: one page including the terminating NUL. */
export const MOUNT_DATA_MAX = 4096;

/** fsmount attribute flags (linux/mount.h MOUNT_ATTR_*). */
export const MOUNT_ATTR_RDONLY = 0x1;
export const MOUNT_ATTR_NOSUID = 0x2;
export const MOUNT_ATTR_NODEV = 0x4;
export const MOUNT_ATTR_NOEXEC = 0x8;

/**
 * The new mount API (fsopen, fsconfig per parameter, fsmount, move_mount): mounts a new
 * `fstype` filesystem on `target` with `params` ([key, value], or [key, null] for a flag),
 * free of mount(2)'s one-page option limit. `attrFlags` are MOUNT_ATTR_* flags.
 */
export function fsmount(fstype: string, target: string, attrFlags: number, params: [string, string | null][]): void {
  native().fsmount(fstype, target, attrFlags, params);
}

/** Splits on `sep` where it is not escaped with a backslash; the escapes stay in the pieces. */
function splitUnescaped(s: string, sep: string): string[] {
  const out: string[] = [];
  let cur = "";
  for (let i = 0; i < s.length; i++) {
    if (s[i] === "\\" && i + 1 < s.length) cur += s[i] + s[++i];
    else if (s[i] === sep) {
      out.push(cur);
      cur = "";
    } else cur += s[i];
  }
  out.push(cur);
  return out;
}

const unescape = (s: string) => s.replace(/\\(.)/g, "$1");

/** An overlay mount from a legacy option string, as fsconfig parameters: each lower layer one "lowerdir+". */
function mountOverlayParams(source: string, target: string, flags: number, data: string): void {
  const params: [string, string | null][] = [["source", source || "overlay"]];
  for (const opt of splitUnescaped(data, ",")) {
    if (opt === "") continue;
    const eq = opt.indexOf("=");
    const key = eq < 0 ? opt : opt.slice(0, eq);
    const value = eq < 0 ? null : opt.slice(eq + 1);
    if (key === "lowerdir" && value !== null) {
      // "::" separates data-only layers (lowerdir=a:b::c); they take "datadir+".
      const [lower, ...data] = value.split("::");
      for (const d of splitUnescaped(lower, ":")) params.push(["lowerdir+", unescape(d)]);
      for (const d of data.flatMap((x) => splitUnescaped(x, ":"))) params.push(["datadir+", unescape(d)]);
    } else {
      params.push([key, value === null ? null : unescape(value)]);
    }
  }
  let attr = 0;
  if (flags & MS_RDONLY) attr |= MOUNT_ATTR_RDONLY;
  if (flags & MS_NOSUID) attr |= MOUNT_ATTR_NOSUID;
  if (flags & MS_NODEV) attr |= MOUNT_ATTR_NODEV;
  if (flags & MS_NOEXEC) attr |= MOUNT_ATTR_NOEXEC;
  fsmount("overlay", target, attr, params);
}

/** umount2(2); flags MNT_DETACH / MNT_FORCE. A target that is not a mount point fails with EINVAL. */
/**
 * An idmapped copy of the mount tree at `source` moved onto `target`: ids on disk show shifted
 * by the mappings of the user namespace file `usernsPath` (open_tree + mount_setattr
 * MOUNT_ATTR_IDMAP + move_mount; the filesystem must support idmapped mounts).
 */
export function idmapMount(source: string, target: string, usernsPath: string): void {
  native().idmapMount(source, target, usernsPath);
}

/**
 * Tries a recursively read-only mount for real: in a private mount namespace of a short-lived
 * thread, a tmpfs on `dir` (an existing directory) with a tmpfs inside it, mount_setattr
 * (AT_RECURSIVE, MOUNT_ATTR_RDONLY) on the outer one, and a file created in the inner one,
 * which must fail with EROFS. Null when it works, else what failed ("mount_setattr(...): ENOSYS").
 * Nothing stays mounted: the namespace dies with the thread.
 */
export function probeRecursiveReadOnly(dir: string): string | null {
  return native().probeRecursiveReadOnly(dir);
}

/**
 * Tries, in a child process in a new user namespace (ids 0..size-1 mapped to hostId..) and
 * mount namespace, what a runtime does for /sys when that namespace does not own the network
 * namespace (the host's): a recursive clone of the host's /sys made read-only, nosuid, nodev
 * and noexec with mount_setattr(AT_RECURSIVE). `submount` (relative to /sys, "" to skip) must
 * then be read-only and `readable` (relative to /sys) readable. Null when it works, else what
 * failed. The clone is never attached; the child's namespaces go with it.
 */
export function probeUsernsHostSys(hostId: number, size: number, submount: string, readable: string): string | null {
  return native().probeUsernsHostSys(hostId, size, submount, readable);
}

export function umount2(target: string, flags: number): void {
  native().umount2(target, flags);
}

/**
 * umount2(2) on the libuv thread pool: unmounting an overlay syncs its upper filesystem, which
 * takes milliseconds the event loop should not be blocked for. Rejects with the SysError
 * umount2 throws (EINVAL when `target` is not a mount point, ENOENT when it does not exist,
 * EBUSY when in use).
 */
export function umount2Async(target: string, flags: number): Promise<void> {
  return native().umount2Async(target, flags);
}

/**
 * syncfs(2) of the filesystem holding `path`, on the libuv thread pool: its dirty data and
 * metadata reach the disk. Rejects with a SysError (ENOENT when `path` does not exist).
 */
export function syncfs(path: string): Promise<void> {
  return native().syncfsAsync(path);
}

/**
 * A new regular file at `path` holding `data`, owned by uid:gid, with `mode` (permission and
 * setuid/setgid/sticky bits) and both times set to `mtime`, in one job on the libuv thread pool
 * (native/sys/files.c). Never follows or reuses what is at `path`: rejects with a SysError
 * EEXIST when anything is there (a symlink too), and with the failing call's error otherwise
 * (ENOSPC, EDQUOT, EPERM from fchown...).
 */
export function createFile(
  path: string,
  data: Buffer,
  mode: number,
  uid: number,
  gid: number,
  mtime: Date,
): Promise<void> {
  const ms = mtime.getTime();
  const sec = Math.floor(ms / 1000);
  return native().createFileAsync(path, data, mode, uid, gid, sec, Math.round((ms - sec * 1000) * 1e6));
}

/** glibc makedev(3): the dev_t number for mknod (makedev(0, 0) is the overlayfs whiteout device). */
export function makedev(major: number, minor: number): number {
  return native().makedev(major, minor);
}

/** mknod(2); `mode` is the file type (S_IFCHR, S_IFBLK, S_IFIFO) or'ed with permission bits (umask applies). */
export function mknod(path: string, mode: number, dev: number): void {
  native().mknod(path, mode, dev);
}

/** setxattr(2), following symlinks. trusted.* needs CAP_SYS_ADMIN. */
export function setxattr(path: string, name: string, value: Buffer): void {
  native().setxattr(path, name, value);
}

/** lsetxattr(2): sets on a symlink itself (the kernel refuses user.* there: EPERM). */
export function lsetxattr(path: string, name: string, value: Buffer): void {
  native().lsetxattr(path, name, value);
}

/** returns null when the attribute does not exist (ENODATA) */
export function getxattr(path: string, name: string): Buffer | null {
  return native().getxattr(path, name);
}

/** Like getxattr but does not follow a final symlink; null when absent. */
export function lgetxattr(path: string, name: string): Buffer | null {
  return native().lgetxattr(path, name);
}

/** llistxattr(2): the attribute names of path itself (trusted.* are listed only with CAP_SYS_ADMIN). */
export function llistxattr(path: string): string[] {
  return native().llistxattr(path);
}

/**
 * prctl(PR_SET_CHILD_SUBREAPER): orphaned descendants are reparented to this process instead of
 * init, so it can reap them with waitpid. Process-wide.
 */
export function prctlSetChildSubreaper(on: boolean): void {
  native().prctlSetChildSubreaper(on);
}

/**
 * Raw setns(2). It moves only the CALLING THREAD (Node's main JS thread), not the process;
 * libuv's thread pool stays where it was. Prefer connectInNetns for network work.
 */
export function setns(fd: number, nstype: number): void {
  native().setns(fd, nstype);
}

/**
 * Raw unshare(2) for the CALLING THREAD only: Node is multithreaded and libuv's pool threads (which
 * run fs calls) keep the old namespaces, so this is rarely what you want in berthd. Use netnsCreate
 * for network namespaces and a child process (e.g. `unshare` or runc) for anything else.
 */
export function unshare(flags: number): void {
  native().unshare(flags);
}

/**
 * waitpid(2); pid -1 waits for any child. Without WNOHANG it blocks the event loop until a child
 * changes state. No children left: SysError ECHILD. Note that waitpid(-1) can also reap children
 * Node's child_process spawned (their 'exit' then never fires).
 */
export function waitpid(pid: number, options: number): WaitResult {
  return native().waitpid(pid, options);
}

/** pidfd_open(2) (Linux >= 5.3): a close-on-exec fd referring to the process, immune to pid reuse. */
export function pidfdOpen(pid: number): number {
  return native().pidfdOpen(pid);
}

/**
 * Creates a new network namespace and bind-mounts it on `path` (an existing empty file).
 * The file is created (mode 0444) if missing; its directory must exist. The namespace is made
 * in a short-lived thread, so this process stays in its own namespace. On failure a file this
 * call created is removed again. Remove with umount2(path, MNT_DETACH) then unlink.
 */
export function netnsCreate(path: string): void {
  native().netnsCreate(path);
}

/** flock operations (sys/file.h) */
export const LOCK_EX = 2;
export const LOCK_NB = 4;
export const LOCK_UN = 8;

/**
 * flock(2) on an open fd. Pass LOCK_NB (and retry on EAGAIN): a blocking lock would stop the
 * event loop. The lock goes when the last fd of the open file closes, or the process dies.
 */
export function flock(fd: number, operation: number): void {
  native().flock(fd, operation);
}

/**
 * Brings the loopback interface up inside the network namespace pinned at `nsPath` (what the
 * CNI loopback plugin does, minus a process start). The namespace is entered in a short-lived
 * thread of its own, so the event loop's thread stays in the host namespace.
 */
export function netnsLoopbackUp(nsPath: string): void {
  native().netnsLoopbackUp(nsPath);
}

/**
 * Opens a TCP connection from inside the network namespace at nsPath; returns the connected fd.
 * `host` is an IPv4 or IPv6 literal ("::1" or "[::1]"), or "localhost" (127.0.0.1, then ::1).
 * The work runs in a short-lived thread; the returned fd is close-on-exec and usable anywhere,
 * e.g. `new net.Socket({ fd })`. `timeoutMs` (an addition to the agreed interface) bounds the
 * connect, which otherwise blocks the event loop for as long as the kernel takes.
 */
export function connectInNetns(nsPath: string, host: string, port: number, timeoutMs?: number): number {
  return native().connectInNetns(nsPath, host, port, timeoutMs ?? null);
}

/** malloc_trim(0): glibc returns every arena's free pages to the kernel; true when some were. */
export function mallocTrim(): boolean {
  return native().mallocTrim();
}
