// Applying CDI container edits to an OCI spec, as the CDI spec and its reference library do:
// env appended; device nodes replacing any node at the same path, with type, major/minor and
// mode read from the host node when the spec leaves them out, owned by the process's uid/gid
// when not given, and allowed in the device cgroup (rwm unless the spec says otherwise,
// "none" for no access); mounts replacing any mount at the same destination and kept in
// destination order (a parent before what is mounted below it); hooks appended by name; additional
// GIDs (0 ignored). intelRdt and netDevices are refused: runc 1.1 has no netDevices and berth
// does not manage resctrl, and nothing a spec asks for is dropped silently.
import { lstatSync } from "node:fs";
import type { Spec } from "../../oci/spec.js";
import { FailedPreconditionError } from "../../util/errors.js";
import type { CdiContainerEdits } from "./spec.js";

export interface HostDeviceInfo {
  type: "b" | "c" | "p";
  major: number;
  minor: number;
  fileMode: number;
}

export type DeviceLookup = (hostPath: string) => HostDeviceInfo;

/** The host's device node at `path` (lstat, as the library does: a symlink is not a device). */
export function hostDeviceInfo(path: string): HostDeviceInfo {
  const st = lstatSync(path, { bigint: true });
  const type = st.isBlockDevice() ? "b" : st.isCharacterDevice() ? "c" : st.isFIFO() ? "p" : undefined;
  if (!type) throw new Error(`${path} is not a device node`);
  const rdev = st.rdev;
  // glibc's major()/minor() split of a 64-bit dev_t.
  const major = Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
  const minor = Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
  return { type, major, minor, fileMode: Number(st.mode & 0o7777n) };
}

/** Applies one set of edits to `spec` in place. `source` names them in errors. */
export function applyCdiEdits(
  spec: Spec,
  edits: CdiContainerEdits,
  source: string,
  lookup: DeviceLookup = hostDeviceInfo,
): void {
  if (edits.intelRdt) throw new FailedPreconditionError(`CDI ${source}: intelRdt edits are not supported by berth`);
  if (edits.netDevices?.length)
    throw new FailedPreconditionError(
      `CDI ${source}: netDevices edits are not supported by berth (runc 1.1 cannot move interfaces)`,
    );

  if (edits.env?.length) spec.process.env = mergeEnv(spec.process.env, edits.env);

  for (const node of edits.deviceNodes ?? []) {
    const hostPath = node.hostPath ?? node.path;
    let type = node.type;
    let major = node.major ?? 0;
    let minor = node.minor ?? 0;
    let fileMode = node.fileMode;
    const minimal = type !== undefined && (major !== 0 || type === "p");
    let info: HostDeviceInfo | undefined;
    try {
      info = lookup(hostPath);
    } catch (err) {
      if (!minimal)
        throw new FailedPreconditionError(`CDI ${source}: host device ${hostPath}: ${(err as Error).message}`);
    }
    if (info) {
      fileMode ??= info.fileMode;
      if (!minimal) {
        type ??= info.type;
        // "u" is an unbuffered character device: the same node as "c".
        if ((type === "u" ? "c" : type) !== info.type)
          throw new FailedPreconditionError(
            `CDI ${source}: device ${node.path} has type ${type} but host ${hostPath} is ${info.type}`,
          );
        if (type !== "p" && major === 0) {
          major = info.major;
          minor = info.minor;
        }
      }
    }
    const dev = {
      type: type!,
      path: node.path,
      major,
      minor,
      ...(fileMode !== undefined ? { fileMode } : {}),
      ...(node.uid !== undefined ? { uid: node.uid } : spec.process.user.uid > 0 ? { uid: spec.process.user.uid } : {}),
      ...(node.gid !== undefined ? { gid: node.gid } : spec.process.user.gid > 0 ? { gid: spec.process.user.gid } : {}),
    };
    spec.linux.devices = [...(spec.linux.devices ?? []).filter((d) => d.path !== node.path), dev];
    if (dev.type === "b" || dev.type === "c" || dev.type === "u") {
      const access =
        node.permissions === undefined || node.permissions === ""
          ? "rwm"
          : node.permissions === "none"
            ? ""
            : node.permissions;
      spec.linux.resources ??= {};
      (spec.linux.resources.devices ??= []).push({
        allow: true,
        type: dev.type === "b" ? "b" : "c",
        major,
        minor,
        access,
      });
    }
  }

  if (edits.mounts?.length) {
    for (const m of edits.mounts) {
      spec.mounts = spec.mounts.filter((x) => x.destination !== m.containerPath);
      spec.mounts.push({
        destination: m.containerPath,
        source: m.hostPath,
        ...(m.type ? { type: m.type } : {}),
        ...(m.options ? { options: m.options } : {}),
      });
    }
    spec.mounts = sortMounts(spec.mounts);
  }

  for (const h of edits.hooks ?? []) {
    spec.hooks ??= {};
    const hooks = (spec.hooks[h.hookName as keyof typeof spec.hooks] ??= []);
    hooks.push({
      path: h.path,
      ...(h.args ? { args: h.args } : {}),
      ...(h.env ? { env: h.env } : {}),
      ...(h.timeout ? { timeout: h.timeout } : {}),
    });
  }

  for (const gid of edits.additionalGids ?? []) {
    if (gid === 0) continue;
    const gids = (spec.process.user.additionalGids ??= []);
    if (!gids.includes(gid)) gids.push(gid);
  }
}

/** CDI env overrides a variable of the same name (the library's AddMultipleProcessEnv). */
function mergeEnv(env: string[], add: string[]): string[] {
  const out = [...env];
  for (const kv of add) {
    const name = kv.slice(0, kv.indexOf("="));
    const i = out.findIndex((e) => e.slice(0, e.indexOf("=")) === name);
    if (i >= 0) out[i] = kv;
    else out.push(kv);
  }
  return out;
}

/** Stable sort by path depth so a mount never hides one that belongs below it. */
function sortMounts<T extends { destination: string }>(mounts: T[]): T[] {
  const depth = (p: string) => p.split("/").filter(Boolean).length;
  return mounts
    .map((m, i) => ({ m, i }))
    .sort((a, b) => depth(a.m.destination) - depth(b.m.destination) || a.i - b.i)
    .map((x) => x.m);
}
