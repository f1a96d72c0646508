// Reaping orphans without stealing exit statuses from Node's child_process.
//
// The serving shim is a child subreaper, so a container process whose monitor died is
// reparented to it. libuv reaps the children it spawned with waitpid(pid) on each of them;
// a blanket waitpid(-1) would race it and leave a ChildProcess that never exits. So the
// shim records every pid it spawns through child_process (trackChild), and on SIGCHLD
// (and on a slow timer) reaps only zombie children that are not among them. Programs started
// with sys/spawn.ts are reaped by their own pidfd; its live set is skipped the same way (a pid
// enters it before spawnChild returns, so before any SIGCHLD of it can be handled here).
import type { ChildProcess } from "node:child_process";
import { readFileSync, readdirSync } from "node:fs";

import * as sys from "../sys/index.js";
import { liveSpawnedChildren } from "../sys/spawn.js";

const tracked = new Set<number>();

export function trackChild<T extends ChildProcess>(child: T): T {
  const pid = child.pid;
  if (pid) {
    tracked.add(pid);
    child.once("exit", () => tracked.delete(pid));
  }
  return child;
}

function ourChildren(): number[] {
  const out: number[] = [];
  let tids: string[] = [];
  try {
    tids = readdirSync("/proc/self/task");
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      for (const p of readFileSync(`/proc/self/task/${tid}/children`, "utf8").trim().split(/\s+/))
        if (p) out.push(Number(p));
    } catch {
      // thread gone
    }
  }
  return out;
}

function isZombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z");
  } catch {
    return false;
  }
}

/** Reaps zombie orphans; returns how many. */
export function reapOrphans(): number {
  let n = 0;
  const spawned = liveSpawnedChildren();
  for (const pid of ourChildren()) {
    if (tracked.has(pid) || spawned.has(pid) || !isZombie(pid)) continue;
    try {
      if (sys.waitpid(pid, sys.WNOHANG).pid === pid) n++;
    } catch {
      // ECHILD: someone else got it
    }
  }
  return n;
}

/** Becomes a child subreaper and starts reaping orphans. */
export function startReaper(): void {
  sys.prctlSetChildSubreaper(true);
  process.on("SIGCHLD", () => setImmediate(reapOrphans));
  setInterval(reapOrphans, 30_000).unref();
}
