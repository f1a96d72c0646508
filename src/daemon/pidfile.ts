// The pid file in the state directory is berthd's claim on that state: two daemons sharing
// one state dir would fight over the same shims, bundles and sockets. No flock (Node has
// none); instead the file holds the owner's pid and a claim is stale when that pid is gone
// or is no longer a berthd (pid reuse after a reboot or in a container).

import { linkSync, readFileSync, unlinkSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import type { Logger } from "../util/log.js";

export class DaemonConflictError extends Error {
  override name = "DaemonConflictError";
}

/** True if `pid` runs a berthd (or might: an unreadable cmdline counts as yes). */
export function isLiveBerthd(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("berthd");
  } catch {
    return true;
  }
}

export class PidFile {
  private constructor(readonly path: string) {}

  /** Claims the state dir or throws DaemonConflictError naming the running daemon. */
  static acquire(path: string, log: Logger): PidFile {
    const tmp = `${path}.${process.pid}.tmp`;
    writeFileSync(tmp, `${process.pid}\n`, { mode: 0o644 });
    try {
      for (let attempt = 0; ; attempt++) {
        try {
          // link() creates the name only if it is absent, and the file is complete when it appears.
          linkSync(tmp, path);
          return new PidFile(path);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== "EEXIST" || attempt >= 2) throw err;
        }
        let owner = NaN;
        try {
          owner = parseInt(readFileSync(path, "utf8").trim(), 10);
        } catch {
          // vanished or unreadable: treat as stale
        }
        if (isLiveBerthd(owner)) {
          throw new DaemonConflictError(`another berthd (pid ${owner}) is using the state directory ${dirname(path)}`);
        }
        log.warn({ path, pid: Number.isNaN(owner) ? undefined : owner }, "removing stale pid file");
        try {
          unlinkSync(path);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
        }
      }
    } finally {
      unlinkSync(tmp);
    }
  }

  /** Removes the pid file if it is still ours. */
  release(): void {
    try {
      if (parseInt(readFileSync(this.path, "utf8").trim(), 10) === process.pid) unlinkSync(this.path);
    } catch {
      // already gone
    }
  }
}
