// Where the shim keeps its sockets and state, and how a shim group is named.
//
// One serving shim serves every task of one (containerd namespace, caller address) pair, so
// a whole node's pods share a single Node.js process; the per-process monitors
// (native/monitor) keep each container's stdio and exit status, so that sharing costs no
// failure isolation for the containers themselves.
//
// Layout under the root dir (default /run/berth-shim, env BERTH_SHIM_SOCKET_DIR), 0700:
//   <group>.sock               the serving shim's ttrpc socket (0600)
//   <group>.log                the serving shim's log
//   <group>/p/<key>/           one per process (init or exec), <key> = processKey(id, execId)
//       record.json            what the shim needs to re-adopt it (ProcessRecord, process.ts)
//       process.json           an exec's OCI process spec (runc exec --process)
//       ctl.sock, console.sock the monitor's control socket and the runtime's console socket
//       pid, exit ("STATUS SEC NSEC"), failed, oom, exit-published: runtime/monitor/shim records
//       runtime-log.json       the OCI runtime's --log (errors are read back from it)
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const DEFAULT_SOCKET_DIR = "/run/berth-shim";

export function socketDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.BERTH_SHIM_SOCKET_DIR || DEFAULT_SOCKET_DIR;
}

function sha(s: string): string {
  return createHash("sha256").update(s).digest("hex");
}

/**
 * The group of a task: every container started by one containerd/berthd (its address)
 * in one namespace shares a shim. Containers with the same io.kubernetes.cri.sandbox-id are
 * therefore always together.
 */
export function groupId(namespace: string, address: string): string {
  return sha(`${namespace}\0${address}`).slice(0, 16);
}

export function groupSocketPath(root: string, group: string): string {
  return join(root, `${group}.sock`);
}

export function groupStateDir(root: string, group: string): string {
  return join(root, group);
}

/** Short and fixed-length, so socket paths under it stay within sun_path's 108 bytes. */
export function processKey(id: string, execId: string): string {
  return sha(`${id}\0${execId}`).slice(0, 20);
}

export function processStateDir(root: string, group: string, id: string, execId: string): string {
  return join(root, group, "p", processKey(id, execId));
}

/** The monitor binary: env BERTH_MONITOR, else build/berth-monitor in the package. */
export function monitorPath(env: NodeJS.ProcessEnv = process.env): string {
  if (env.BERTH_MONITOR) return env.BERTH_MONITOR;
  return join(packageRoot(), "build", "berth-monitor");
}

/** The package root, found from this file in src/shim or dist/src/shim. */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    if (existsSync(join(dir, "package.json"))) return dir;
    dir = resolve(dir, "..");
  }
  return resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
}
