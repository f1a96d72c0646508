// Builds an OCI bundle for tests: a rootfs holding Debian's static busybox (/bin/busybox
// from busybox-static) with a symlink per applet, and a config.json from `runc spec`,
// adjusted (args, terminal, a unique cgroupsPath, annotations).
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export const BUSYBOX = "/bin/busybox";

export interface BundleOptions {
  args: string[];
  terminal?: boolean;
  env?: string[];
  annotations?: Record<string, string>;
  /** default /berth-test/<basename of dir> */
  cgroupsPath?: string;
  /** Drop the network namespace (share the host's); default: a new one. */
  hostNetwork?: boolean;
  /** Memory limit in bytes (for OOM tests). */
  memoryLimit?: number;
  /** Populate the rootfs somewhere else (e.g. to be mounted on <bundle>/rootfs by Create). */
  rootfsDir?: string;
}

let applets: string[] | undefined;

/** Fills dir with busybox and its applet links. */
export function makeRootfs(dir: string): void {
  mkdirSync(join(dir, "bin"), { recursive: true });
  for (const d of ["proc", "sys", "dev", "tmp", "etc", "root"]) mkdirSync(join(dir, d), { recursive: true });
  copyFileSync(BUSYBOX, join(dir, "bin/busybox"));
  applets ??= execFileSync(BUSYBOX, ["--list"], { encoding: "utf8" })
    .split("\n")
    .filter((a) => a && a !== "busybox");
  for (const a of applets) symlinkSync("busybox", join(dir, "bin", a));
  writeFileSync(join(dir, "etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n");
  writeFileSync(join(dir, "etc/group"), "root:x:0:\n");
}

interface Spec {
  process: { args: string[]; terminal: boolean; env: string[] };
  root: { path: string; readonly: boolean };
  hostname?: string;
  annotations?: Record<string, string>;
  linux: {
    cgroupsPath?: string;
    namespaces: { type: string; path?: string }[];
    resources?: { memory?: { limit?: number; swap?: number } } & Record<string, unknown>;
  };
}

/** Creates <dir>/config.json and (unless rootfsDir) <dir>/rootfs; returns the spec. */
export function makeBundle(dir: string, opts: BundleOptions): Spec {
  mkdirSync(dir, { recursive: true });
  if (opts.rootfsDir) {
    makeRootfs(opts.rootfsDir);
    mkdirSync(join(dir, "rootfs"), { recursive: true });
  } else {
    makeRootfs(join(dir, "rootfs"));
  }
  execFileSync("runc", ["spec", "--bundle", dir]);
  const spec = JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) as Spec;
  spec.process.args = opts.args;
  spec.process.terminal = opts.terminal ?? false;
  if (opts.env) spec.process.env = [...spec.process.env, ...opts.env];
  spec.root.readonly = false;
  spec.hostname = "berth-test";
  spec.annotations = { ...(spec.annotations ?? {}), ...(opts.annotations ?? {}) };
  const name = dir.split("/").filter(Boolean).pop()!;
  spec.linux.cgroupsPath = opts.cgroupsPath ?? `/berth-test/${name}-${process.pid}`;
  if (opts.hostNetwork) spec.linux.namespaces = spec.linux.namespaces.filter((n) => n.type !== "network");
  if (opts.memoryLimit) {
    spec.linux.resources = {
      ...(spec.linux.resources ?? {}),
      memory: { limit: opts.memoryLimit, swap: opts.memoryLimit },
    };
  }
  writeFileSync(join(dir, "config.json"), JSON.stringify(spec, null, 2));
  return spec;
}

/** The OCI process JSON for an exec (containerd sends it as an Any in ExecProcessRequest.spec). */
export function execProcess(args: string[], terminal = false): Buffer {
  return Buffer.from(
    JSON.stringify({
      terminal,
      user: { uid: 0, gid: 0 },
      args,
      env: ["PATH=/bin:/usr/bin:/sbin:/usr/sbin", "TERM=xterm"],
      cwd: "/",
    }),
  );
}

export const PROCESS_SPEC_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Process";
