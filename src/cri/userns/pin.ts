// A pod's user namespace, and the network namespace it owns, made before CNI runs and pinned
// by bind mounts (as containerd pins its pods' user namespaces). The network namespace must
// belong to the pod's user namespace: the kernel lets a process mount sysfs, or bind a port
// below 1024, only with the capability in the user namespace owning its network namespace,
// so a container root of a user namespace that joined a netns made by the host could do
// neither (runc fails on the /sys mount with EPERM).
//
// A user namespace can only be made by a single-threaded process, so a short-lived helper
// (util-linux unshare(1)) makes both and waits; berthd writes its uid/gid maps (as root of
// the parent namespace, any range is allowed), binds /proc/PID/ns/{user,net} onto the pin
// files, and lets it exit. The helper starts with posix_spawn (sys/spawn.ts): no fork of berthd.

import { closeSync, openSync } from "node:fs";
import { unlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import * as sys from "../../sys/index.js";
import { spawnChild, type Child } from "../../sys/spawn.js";
import { InternalError } from "../../util/errors.js";
import type { PodUserns } from "./options.js";

const mapText = (m: PodUserns["uidMappings"]) => m.map((x) => `${x.containerID} ${x.hostID} ${x.size}\n`).join("");

/** Creates `path` as an empty file (mode 0444), if missing, for a namespace to be bound on. */
function touch(path: string): void {
  closeSync(openSync(path, "a", 0o444));
}

/**
 * Makes the pod's user namespace with `userns`'s mappings, pinned at `usernsFile`, and, when
 * `netnsFile` is given, a network namespace owned by it, pinned there. On failure nothing is
 * left: the pins are unmounted and removed.
 */
export async function pinPodNamespaces(usernsFile: string, netnsFile: string | null, userns: PodUserns): Promise<void> {
  const args = ["--user", ...(netnsFile ? ["--net"] : []), "--", "/bin/sh", "-c", "echo ready; read _"];
  let helper: Child;
  try {
    helper = spawnChild("unshare", args, { stdio: ["pipe", "pipe", "pipe"] });
  } catch (err) {
    throw new InternalError(`make the pod's user namespace: ${(err as Error).message}`, { cause: err });
  }
  const stdin = helper.stdin!;
  stdin.on("error", () => undefined); // it may be gone before we close its stdin
  let stderr = "";
  helper.stderr!.on("data", (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<void>((resolve) => helper.once("close", () => resolve()));
  try {
    await new Promise<void>((resolve, reject) => {
      helper.stdout!.once("data", () => resolve());
      helper.once("close", (code) =>
        reject(new InternalError(`unshare --user exited (${code}) before making the namespaces: ${stderr.trim()}`)),
      );
    });
    const pid = helper.pid;
    await writeFile(`/proc/${pid}/uid_map`, mapText(userns.uidMappings));
    await writeFile(`/proc/${pid}/gid_map`, mapText(userns.gidMappings));
    touch(usernsFile);
    sys.mount(`/proc/${pid}/ns/user`, usernsFile, null, sys.MS_BIND, null);
    if (netnsFile) {
      touch(netnsFile);
      sys.mount(`/proc/${pid}/ns/net`, netnsFile, null, sys.MS_BIND, null);
    }
  } catch (err) {
    await unpinNamespace(usernsFile).catch(() => undefined);
    if (netnsFile) await unpinNamespace(netnsFile).catch(() => undefined);
    throw err instanceof InternalError
      ? err
      : new InternalError(`make the pod's user namespace: ${(err as Error).message}`, { cause: err });
  } finally {
    stdin.end();
    helper.kill("SIGKILL");
    await exited;
  }
}

/** Where a pod's user namespace is pinned: in its pod dir (unpinned before the dir is removed). */
export function podUsernsPath(podDir: string): string {
  return join(podDir, "userns");
}

/** Unmounts and removes a namespace pin; fine when it is already gone. */
export async function unpinNamespace(path: string): Promise<void> {
  for (let i = 0; i < 8; i++) {
    try {
      sys.umount2(path, sys.MNT_DETACH);
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if (code === "EINVAL" || code === "ENOENT") break;
      throw err;
    }
  }
  await unlink(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== "ENOENT") throw err;
  });
}
