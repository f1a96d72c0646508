// Process memory from /proc/PID/smaps_rollup (RSS and PSS, KiB) and process-tree lookups.
import { readFileSync, readdirSync } from "node:fs";

export interface Mem {
  rssKiB: number;
  pssKiB: number;
}

export function memOf(pid: number): Mem {
  try {
    const t = readFileSync(`/proc/${pid}/smaps_rollup`, "utf8");
    const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, "m").exec(t)?.[1] ?? 0);
    return { rssKiB: kb("Rss"), pssKiB: kb("Pss") };
  } catch {
    return { rssKiB: 0, pssKiB: 0 };
  }
}

export function sumMem(pids: number[]): Mem {
  const m = { rssKiB: 0, pssKiB: 0 };
  for (const pid of pids) {
    const x = memOf(pid);
    m.rssKiB += x.rssKiB;
    m.pssKiB += x.pssKiB;
  }
  return m;
}

interface Proc {
  pid: number;
  ppid: number;
  cmd: string;
}

function processes(): Proc[] {
  const out: Proc[] = [];
  for (const n of readdirSync("/proc")) {
    if (!/^\d+$/.test(n)) continue;
    try {
      const cmd = readFileSync(`/proc/${n}/cmdline`, "utf8").replace(/\0/g, " ");
      const stat = readFileSync(`/proc/${n}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      out.push({ pid: Number(n), ppid, cmd });
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

/**
 * The shim processes serving a CRI daemon: every shim whose command line names the daemon's
 * socket (its -address), plus their berth-monitor descendants.
 * Container processes (pause, sleep) are left out: they are the workload, not the shim.
 */
export function shimPids(addressMarker: string): number[] {
  const all = processes();
  // berth's serving shim runs as `node .../shim/main.js ... -address ADDR ... -berth-serve`
  // (one per daemon address and namespace, not one per pod); containerd's, one per pod.
  const isShim = (cmd: string) => cmd.includes("containerd-shim") || cmd.includes("-berth-serve");
  const shims = all.filter((p) => isShim(p.cmd) && p.cmd.includes(addressMarker));
  const picked = new Set(shims.map((p) => p.pid));
  let grew = true;
  while (grew) {
    grew = false;
    for (const p of all) {
      if (!picked.has(p.pid) && picked.has(p.ppid) && (p.cmd.includes("berth-monitor") || isShim(p.cmd))) {
        picked.add(p.pid);
        grew = true;
      }
    }
  }
  return [...picked];
}

/** Load averages from /proc/loadavg. */
export function loadavg(): string {
  return readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
}
