// Who the container process runs as: the CRI RunAsUser / RunAsUsername / RunAsGroup /
// supplemental groups and the image's USER, resolved against the IMAGE's /etc/passwd
// and /etc/group exactly as containerd does (oci.WithUser, WithAdditionalGIDs).
//
// The image's files are untrusted: /etc/passwd may be a symlink to /etc/shadow of the
// host, or to a FIFO that blocks the daemon forever. They are read through a resolver
// that keeps every symlink inside the rootfs, refuses anything but a regular file, and
// bounds the size.

import { closeSync, constants, fstatSync, lstatSync, openSync, readlinkSync, readSync } from "node:fs";
import { join } from "node:path";
import { InvalidArgumentError } from "../util/errors.js";

export interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
  shell: string;
}

export interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

/** Where users and groups come from; null means the file does not exist. */
export interface UserLookup {
  passwd(): PasswdEntry[] | null;
  group(): GroupEntry[] | null;
}

/** The uid, gid and supplementary gids of the container process. */
export interface ProcessUser {
  uid: number;
  gid: number;
  additionalGids: number[];
}

const MAX_ID = 2 ** 31 - 1; // runc (and so containerd) refuse ids above MaxInt32
const MAX_USER_FILE = 16 * 1024 * 1024;
const MAX_SYMLINKS = 40;

/**
 * The host path of `path` inside `root`, with every symlink resolved as if `root` were
 * "/": absolute link targets restart at `root` and ".." never climbs above it. Missing
 * components are kept lexically (the caller's open then fails with ENOENT).
 */
export function resolveInRoot(root: string, path: string): string {
  const done: string[] = [];
  const todo = path.split("/").reverse();
  let links = 0;
  while (todo.length > 0) {
    const part = todo.pop()!;
    if (part === "" || part === ".") continue;
    if (part === "..") {
      done.pop();
      continue;
    }
    const candidate = join(root, ...done, part);
    let st;
    try {
      st = lstatSync(candidate);
    } catch {
      done.push(part);
      continue;
    }
    if (!st.isSymbolicLink()) {
      done.push(part);
      continue;
    }
    if (++links > MAX_SYMLINKS) {
      throw new InvalidArgumentError(`too many symlinks resolving ${path} inside ${root}`);
    }
    const target = readlinkSync(candidate);
    if (target.startsWith("/")) done.length = 0;
    todo.push(...target.split("/").reverse());
  }
  return join(root, ...done);
}

/** Reads a regular file at `path` inside `root` (symlinks kept inside); null when it does not exist. */
export function readFileInRoot(root: string, path: string, maxBytes = MAX_USER_FILE): string | null {
  const hostPath = resolveInRoot(root, path);
  // Refuse anything but a regular file before opening: opening a device node the image
  // placed there could have side effects on the host.
  try {
    if (!lstatSync(hostPath).isFile()) throw new InvalidArgumentError(`${path} of the image is not a regular file`);
  } catch (err) {
    if (err instanceof InvalidArgumentError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return null;
    throw new InvalidArgumentError(`cannot read ${path} of the image: ${(err as Error).message}`, { cause: err });
  }
  let fd: number;
  try {
    // O_NOFOLLOW: the last component was resolved above, a symlink there now is a race.
    // O_NONBLOCK: opening a FIFO must not hang the daemon (it is refused just below).
    fd = openSync(hostPath, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return null;
    throw new InvalidArgumentError(`cannot open ${path} of the image: ${(err as Error).message}`, { cause: err });
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new InvalidArgumentError(`${path} of the image is not a regular file`);
    if (st.size > maxBytes) throw new InvalidArgumentError(`${path} of the image is larger than ${maxBytes} bytes`);
    const buf = Buffer.alloc(st.size);
    let off = 0;
    while (off < buf.length) {
      const n = readSync(fd, buf, off, buf.length - off, off);
      if (n === 0) break;
      off += n;
    }
    return buf.subarray(0, off).toString("utf8");
  } finally {
    closeSync(fd);
  }
}

function parseId(text: string | undefined): number | null {
  if (text === undefined || !/^\d+$/.test(text.trim())) return null;
  return Number(text.trim());
}

function dataLines(text: string): string[] {
  return text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#") && !l.startsWith("+") && !l.startsWith("-"));
}

/** /etc/passwd lines `name:password:uid:gid:gecos:home:shell`; malformed lines are skipped. */
export function parsePasswd(text: string): PasswdEntry[] {
  const out: PasswdEntry[] = [];
  for (const line of dataLines(text)) {
    const f = line.split(":");
    const uid = parseId(f[2]);
    const gid = parseId(f[3]);
    if (!f[0] || uid === null || gid === null) continue;
    out.push({ name: f[0], uid, gid, home: f[5] ?? "", shell: f[6] ?? "" });
  }
  return out;
}

/** /etc/group lines `name:password:gid:member,member`; malformed lines are skipped. */
export function parseGroup(text: string): GroupEntry[] {
  const out: GroupEntry[] = [];
  for (const line of dataLines(text)) {
    const f = line.split(":");
    const gid = parseId(f[2]);
    if (!f[0] || gid === null) continue;
    const members = (f[3] ?? "")
      .split(",")
      .map((m) => m.trim())
      .filter((m) => m !== "");
    out.push({ name: f[0], gid, members });
  }
  return out;
}

/** Users and groups from `<rootfs>/etc/passwd` and `<rootfs>/etc/group`, read at most once each. */
export function rootfsUserLookup(rootfs: string): UserLookup {
  let passwd: PasswdEntry[] | null | undefined;
  let group: GroupEntry[] | null | undefined;
  return {
    passwd() {
      if (passwd === undefined) {
        const text = readFileInRoot(rootfs, "/etc/passwd");
        passwd = text === null ? null : parsePasswd(text);
      }
      return passwd;
    },
    group() {
      if (group === undefined) {
        const text = readFileInRoot(rootfs, "/etc/group");
        group = text === null ? null : parseGroup(text);
      }
      return group;
    },
  };
}

export interface UserRequest {
  /** CRI RunAsUser. */
  runAsUser?: number;
  /** CRI RunAsUsername (wins over runAsUser, as in containerd). */
  runAsUsername?: string;
  /** CRI RunAsGroup. */
  runAsGroup?: number;
  /** CRI supplemental groups, added to those the image's /etc/group gives. */
  supplementalGroups?: number[];
  /** Strict policy: only the CRI supplemental groups, nothing from /etc/group. */
  strictSupplementalGroups?: boolean;
  /** The image config's User ("name", "uid", "name:group", "uid:gid"). */
  imageUser?: string;
}

function checkId(v: number, what: string, userstr: string): number {
  if (!Number.isInteger(v) || v < 0 || v > MAX_ID) {
    throw new InvalidArgumentError(`invalid user ${JSON.stringify(userstr)}: ${what} out of range 0..${MAX_ID}`);
  }
  return v;
}

function numeric(text: string): number | null {
  return /^\d+$/.test(text) ? Number(text) : null;
}

/**
 * The user string containerd builds from the CRI fields (generateUserString): the user
 * name or uid, then ":gid" when RunAsGroup is set; "" when the CRI names no user.
 */
export function criUserString(req: UserRequest): string {
  let user = "";
  if (req.runAsUser !== undefined) user = String(req.runAsUser);
  if (req.runAsUsername) user = req.runAsUsername;
  if (user === "") {
    if (req.runAsGroup !== undefined) {
      throw new InvalidArgumentError(
        `RunAsGroup ${req.runAsGroup} is set without RunAsUser or RunAsUsername: set a user too`,
      );
    }
    return "";
  }
  return req.runAsGroup !== undefined ? `${user}:${req.runAsGroup}` : user;
}

function findUserByName(lookup: UserLookup, name: string, userstr: string): PasswdEntry {
  const entries = lookup.passwd();
  const u = entries?.find((e) => e.name === name);
  if (!u) {
    throw new InvalidArgumentError(
      `user ${JSON.stringify(name)} (from ${JSON.stringify(userstr)}) is not in the image's /etc/passwd` +
        (entries === null ? " (the image has no /etc/passwd)" : "") +
        ": use a numeric uid or a user the image defines",
    );
  }
  return u;
}

/** Resolves `user[:group]` against the image like containerd's oci.WithUser. */
function resolveUserString(userstr: string, lookup: UserLookup): { uid: number; gid: number } {
  const parts = userstr.split(":");
  if (parts.length === 1) {
    const uid = numeric(parts[0]!);
    if (uid === null) {
      const u = findUserByName(lookup, parts[0]!, userstr);
      return { uid: checkId(u.uid, "uid", userstr), gid: checkId(u.gid, "gid", userstr) };
    }
    checkId(uid, "uid", userstr);
    // A uid the image knows gets its primary group; an unknown one runs with gid 0.
    const u = lookup.passwd()?.find((e) => e.uid === uid);
    return { uid, gid: u ? checkId(u.gid, "gid", userstr) : 0 };
  }
  if (parts.length === 2) {
    const [userPart, groupPart] = parts as [string, string];
    let uid = numeric(userPart);
    let gid = numeric(groupPart);
    if (uid === null) uid = findUserByName(lookup, userPart, userstr).uid;
    if (gid === null) {
      const groups = lookup.group();
      const g = groups?.find((e) => e.name === groupPart);
      if (!g) {
        throw new InvalidArgumentError(
          `group ${JSON.stringify(groupPart)} (from ${JSON.stringify(userstr)}) is not in the image's /etc/group` +
            (groups === null ? " (the image has no /etc/group)" : ""),
        );
      }
      gid = g.gid;
    }
    return { uid: checkId(uid, "uid", userstr), gid: checkId(gid, "gid", userstr) };
  }
  throw new InvalidArgumentError(`invalid user ${JSON.stringify(userstr)}: expected user, uid, user:group or uid:gid`);
}

/** The groups of /etc/group that list `username` as a member, except its own same-named group. */
function memberGroups(lookup: UserLookup, userPart: string): number[] {
  let username = userPart;
  const uid = numeric(userPart);
  if (uid !== null) {
    const u = lookup.passwd()?.find((e) => e.uid === uid);
    if (!u) return [];
    username = u.name;
  }
  const groups = lookup.group();
  if (!groups) return [];
  return groups.filter((g) => g.name !== username && g.members.includes(username)).map((g) => g.gid);
}

/**
 * The process user: CRI user fields first, else the image's USER, else root; plus
 * supplementary groups = groups of the image's /etc/group listing the user (unless the
 * policy is Strict) merged with the CRI supplemental groups, sorted and unique.
 */
export function resolveProcessUser(req: UserRequest, lookup: UserLookup): ProcessUser {
  const fromCri = criUserString(req);
  const userstr = fromCri !== "" ? fromCri : (req.imageUser ?? "").trim();
  const { uid, gid } = userstr === "" ? { uid: 0, gid: 0 } : resolveUserString(userstr, lookup);

  // containerd looks up member groups by the user part alone (name, else uid, else the
  // image user's name part, else "0" = root).
  let groupUser = "0";
  if (req.runAsUsername) groupUser = req.runAsUsername;
  else if (req.runAsUser !== undefined) groupUser = String(req.runAsUser);
  else if (req.imageUser && req.imageUser.trim() !== "") groupUser = req.imageUser.trim().split(":")[0]!;

  const gids = new Set<number>();
  if (!req.strictSupplementalGroups) for (const g of memberGroups(lookup, groupUser)) gids.add(g);
  for (const g of req.supplementalGroups ?? []) gids.add(checkId(g, "supplemental gid", String(g)));
  return { uid, gid, additionalGids: [...gids].sort((a, b) => a - b) };
}
