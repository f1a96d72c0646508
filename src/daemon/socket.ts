// The CRI socket path: refuse to steal it from a live daemon, clear it when stale, and give
// the bound socket its configured owner and mode.

import { chmodSync, chownSync, lstatSync, readdirSync, readFileSync, readlinkSync, unlinkSync } from "node:fs";
import { connect } from "node:net";
import type { Logger } from "../util/log.js";
import { DaemonConflictError } from "./pidfile.js";

type Probe = "live" | "stale" | "absent";

/** Connects to the socket: "live" if something accepts, "stale" if nobody listens. */
function probe(path: string): Promise<Probe> {
  return new Promise((resolve, reject) => {
    const sock = connect(path);
    const timer = setTimeout(() => {
      // A listener that does not accept within 2 s is still a listener (e.g. a full backlog).
      sock.destroy();
      resolve("live");
    }, 2000);
    sock.once("connect", () => {
      clearTimeout(timer);
      sock.destroy();
      resolve("live");
    });
    sock.once("error", (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (err.code === "ECONNREFUSED") resolve("stale");
      else if (err.code === "ENOENT") resolve("absent");
      else if (err.code === "EAGAIN") resolve("live");
      else reject(err);
    });
  });
}

/**
 * The pid of the process listening on a unix socket path, found through /proc/net/unix
 * (path -> inode) and /proc/<pid>/fd (inode -> pid). Best effort: undefined if not found.
 */
export function socketOwnerPid(path: string): number | undefined {
  try {
    const inodes = new Set<string>();
    for (const line of readFileSync("/proc/net/unix", "utf8").split("\n").slice(1)) {
      const cols = line.trim().split(/\s+/);
      // Num RefCount Protocol Flags Type St Inode Path; flag 0x10000 marks a listening socket.
      if (cols.length >= 8 && cols[7] === path && (parseInt(cols[3], 16) & 0x10000) !== 0) inodes.add(cols[6]);
    }
    if (inodes.size === 0) return undefined;
    const wanted = new Set([...inodes].map((i) => `socket:[${i}]`));
    for (const entry of readdirSync("/proc")) {
      if (!/^\d+$/.test(entry)) continue;
      let fds: string[];
      try {
        fds = readdirSync(`/proc/${entry}/fd`);
      } catch {
        continue;
      }
      for (const fd of fds) {
        try {
          if (wanted.has(readlinkSync(`/proc/${entry}/fd/${fd}`))) return Number(entry);
        } catch {
          // fd closed while we looked
        }
      }
    }
  } catch {
    // no /proc: no pid
  }
  return undefined;
}

function processName(pid: number): string | undefined {
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean);
    return argv.find((a) => a.includes("berthd")) ? "berthd" : argv[0];
  } catch {
    return undefined;
  }
}

/** Makes sure `path` is free to bind: throws if a live server holds it, removes it if stale. */
export async function claimSocketPath(path: string, log: Logger): Promise<void> {
  let isSocket: boolean;
  try {
    isSocket = lstatSync(path).isSocket();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
    throw err;
  }
  if (!isSocket) throw new DaemonConflictError(`${path} exists and is not a socket; refusing to replace it`);
  const state = await probe(path);
  if (state === "absent") return;
  if (state === "live") {
    const pid = socketOwnerPid(path);
    const name = pid === undefined ? "berthd" : processName(pid);
    const who = name === "berthd" || name === undefined ? "another berthd" : `another process (${name})`;
    throw new DaemonConflictError(`${who} is serving ${path} (pid ${pid ?? "unknown"})`);
  }
  log.warn({ path }, "removing stale socket (nothing listens on it)");
  unlinkSync(path);
}

/** Gives the bound socket its configured mode and owner. */
export function setSocketAccess(path: string, opts: { mode: number; uid: number; gid: number }): void {
  const st = lstatSync(path);
  if (st.uid !== opts.uid || st.gid !== opts.gid) chownSync(path, opts.uid, opts.gid);
  chmodSync(path, opts.mode);
}
