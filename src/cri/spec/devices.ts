// Host device nodes for linux.devices plus the device-cgroup rules that let the
// container use them (containerd's oci.WithDevices / WithHostDevices).

import { lstatSync, readdirSync, realpathSync, statSync } from "node:fs";
import { basename, join } from "node:path";
import { InvalidArgumentError } from "../../util/errors.js";
import type { Device as CriDevice } from "../../gen/cri/runtime/v1/api.js";
import type { Device, DeviceCgroup } from "../../oci/spec.js";

const S_IFMT = 0o170000;
const S_IFCHR = 0o020000;
const S_IFBLK = 0o060000;
const S_IFIFO = 0o010000;

/** Linux dev_t -> major/minor (the glibc gnu_dev_major/minor encoding). */
export function splitDev(rdev: bigint): { major: number; minor: number } {
  const major = Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & 0xfffff000n));
  const minor = Number((rdev & 0xffn) | ((rdev >> 12n) & 0xffffff00n));
  return { major, minor };
}

/** The device node at `path` (not following a final symlink), or null when it is not a device. */
export function deviceFromPath(path: string): Device | null {
  const st = lstatSync(path, { bigint: true });
  const fmt = Number(st.mode) & S_IFMT;
  let type: string;
  if (fmt === S_IFCHR) type = "c";
  else if (fmt === S_IFBLK) type = "b";
  else if (fmt === S_IFIFO) type = "p";
  else return null;
  const { major, minor } = splitDev(st.rdev);
  return { type, path, major, minor, fileMode: Number(st.mode) & 0o7777, uid: Number(st.uid), gid: Number(st.gid) };
}

/** Directories of /dev that hold no device nodes for a container (pseudo filesystems, runtime state). */
const SKIP_DIRS = new Set(["pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"]);

/**
 * Devices at `hostPath`: the node itself, or every node below a directory. With a
 * containerPath the nodes are placed there (a directory keeps its file names).
 */
export function devicesAt(hostPath: string, containerPath?: string): Device[] {
  const st = statSync(hostPath);
  if (!st.isDirectory()) {
    const dev = deviceFromPath(hostPath);
    if (!dev) throw new InvalidArgumentError(`device host path ${hostPath} is not a device node`);
    if (containerPath) dev.path = containerPath;
    return [dev];
  }
  const out: Device[] = [];
  for (const ent of readdirSync(hostPath, { withFileTypes: true })) {
    const p = join(hostPath, ent.name);
    const cp = containerPath ? join(containerPath, basename(ent.name)) : undefined;
    if (ent.isDirectory()) {
      if (SKIP_DIRS.has(ent.name)) continue;
      out.push(...devicesAt(p, cp));
      continue;
    }
    if (ent.name === "console") continue;
    let dev: Device | null;
    try {
      dev = deviceFromPath(p);
    } catch {
      continue; // vanished while listing
    }
    if (!dev || dev.type === "p") continue;
    if (cp) dev.path = cp;
    out.push(dev);
  }
  return out;
}

/** Every device of the host's /dev, for privileged containers. */
export function hostDevices(): Device[] {
  return devicesAt("/dev");
}

/**
 * The devices a CRI config asks for, with an allow rule each. The host path may be a
 * symlink (e.g. /dev/disk/by-id/...); it is resolved first, as containerd does.
 */
export function criDevices(devices: readonly CriDevice[]): { devices: Device[]; rules: DeviceCgroup[] } {
  const out: Device[] = [];
  const rules: DeviceCgroup[] = [];
  for (const d of devices) {
    if (!d.hostPath) throw new InvalidArgumentError("a device has an empty host_path");
    const perms = d.permissions || "rwm";
    if (!/^[rwm]+$/.test(perms)) {
      throw new InvalidArgumentError(
        `device ${d.hostPath}: permissions ${JSON.stringify(d.permissions)} must be letters of "rwm"`,
      );
    }
    let real: string;
    try {
      real = realpathSync(d.hostPath);
    } catch (err) {
      throw new InvalidArgumentError(`device host path ${d.hostPath} does not exist on this node`, { cause: err });
    }
    for (const dev of devicesAt(real, d.containerPath || undefined)) {
      out.push(dev);
      rules.push({ allow: true, type: dev.type, major: dev.major, minor: dev.minor, access: perms });
    }
  }
  return { devices: out, rules };
}
