// Threads, open descriptors and sockets of a container's processes, as cAdvisor counts them
// (container_threads, container_file_descriptors, container_sockets): every process of the
// container's cgroup, read under /proc. A process that exits while it is read counts as gone.
import { readdir, readFile, readlink } from "node:fs/promises";
import { join } from "node:path";
import { cgroupDirsOf } from "./cgroup-files.js";

export interface ProcessCounts {
  processes: number;
  threads: number;
  fds: number;
  sockets: number;
}

/** The "Threads:" line of /proc/<pid>/status. */
export function threadsOf(status: string): number {
  return Number(/^Threads:\s+(\d+)/m.exec(status)?.[1] ?? 0);
}

/** The pids in the cgroup of `pid` (its pids controller, else its unified cgroup), or just `pid`. */
async function cgroupPids(pid: number): Promise<string[]> {
  const dirs = await cgroupDirsOf(pid);
  for (const dir of [dirs.v1("pids"), dirs.unified]) {
    if (!dir) continue;
    const text = await readFile(join(dir, "cgroup.procs"), "utf8").catch(() => "");
    const pids = text.split("\n").filter(Boolean);
    if (pids.length > 0) return pids;
  }
  return [String(pid)];
}

export async function processCounts(pid: number): Promise<ProcessCounts> {
  const out: ProcessCounts = { processes: 0, threads: 0, fds: 0, sockets: 0 };
  for (const p of await cgroupPids(pid)) {
    const status = await readFile(`/proc/${p}/status`, "utf8").catch(() => undefined);
    if (status === undefined) continue;
    out.processes++;
    out.threads += threadsOf(status);
    const entries = await readdir(`/proc/${p}/fd`).catch(() => [] as string[]);
    out.fds += entries.length;
    for (const e of entries) {
      if ((await readlink(`/proc/${p}/fd/${e}`).catch(() => "")).startsWith("socket:")) out.sockets++;
    }
  }
  return out;
}
