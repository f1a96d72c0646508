// The root filesystem of every pod's sandbox process: a directory under <root> holding the
// static /pause program (build/berth-pause) and empty mount points, shared read-only by all
// sandboxes. berth needs no pause image, so a pod starts with nothing to pull.
import { existsSync } from "node:fs";
import { chmod, copyFile, mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { NotFoundError } from "../util/errors.js";

/** The package root, found from this file (src/cri or dist/src/cri). */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    if (existsSync(join(dir, "package.json"))) return dir;
    dir = resolve(dir, "..");
  }
  return resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
}

export function pauseBinaryPath(): string {
  return join(packageRoot(), "build", "berth-pause");
}

const MOUNT_POINTS = ["proc", "dev", "sys", "etc", "tmp", "run"];
const ETC_FILES = ["etc/hostname", "etc/hosts", "etc/resolv.conf"];

/**
 * Creates <root>/sandbox-rootfs once (and again when the pause binary changed), built in a
 * temporary directory and renamed into place so a crash never leaves half of it.
 */
export async function ensureSandboxRootfs(root: string, pause = pauseBinaryPath()): Promise<string> {
  const dir = join(root, "sandbox-rootfs");
  let binary: Buffer;
  try {
    binary = await readFile(pause);
  } catch {
    throw new NotFoundError(`the pod sandbox program ${pause} is missing: build it (npm run build:native)`);
  }
  const current = await readFile(join(dir, "pause")).catch(() => undefined);
  if (current && current.equals(binary)) return dir;
  const tmp = `${dir}.tmp-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true, mode: 0o755 });
  for (const d of MOUNT_POINTS) await mkdir(join(tmp, d), { mode: 0o755 });
  for (const f of ETC_FILES) await writeFile(join(tmp, f), "", { mode: 0o644 });
  await copyFile(pause, join(tmp, "pause"));
  await chmod(join(tmp, "pause"), 0o755);
  // Sandboxes running on the old directory keep it (it is their root); the new one replaces the name.
  const old = `${dir}.old-${process.pid}`;
  if (existsSync(dir)) await rename(dir, old);
  await rename(tmp, dir);
  await rm(old, { recursive: true, force: true }).catch(() => {});
  return dir;
}
