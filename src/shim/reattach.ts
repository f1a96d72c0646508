// Reattaching after a (re)start of the serving shim: the task model is rebuilt from the
// process records in the state dir, and each recorded process gets its monitor back (the
// monitors outlive the shim: they hold the processes' stdio and exit statuses). A process
// that ended meanwhile is reported by its driver's reattach, through the service's exit path.
import { readdir, rm } from "node:fs/promises";
import { join } from "node:path";

import { driverForRecord } from "./driver.js";
import type { ProcessLauncher } from "./launcher.js";
import { Proc, loadRecord, type ProcessRecord } from "./process.js";
import { OciRuntime, runtimeLogPath } from "./runtime.js";
import { holdAfterRestart } from "./start-at-once.js";
import { cgroupPathsOf } from "./stats.js";
import { type Task, openLogFifo } from "./task.js";

/** Rebuilds `tasks` from `<root>/<group>/p`; returns how many tasks there are. */
export async function reattachAll(
  root: string,
  group: string,
  tasks: Map<string, Task>,
  launcher: ProcessLauncher,
): Promise<number> {
  const dir = join(root, group, "p");
  const names = await readdir(dir).catch(() => [] as string[]);
  const records: { r: ProcessRecord; stateDir: string }[] = [];
  for (const name of names) {
    const stateDir = join(dir, name);
    const r = await loadRecord(stateDir);
    if (!r) {
      await rm(stateDir, { recursive: true, force: true });
      continue;
    }
    records.push({ r, stateDir });
  }
  // inits first, so execs find their task
  records.sort((a, b) => Number(a.r.execId !== "") - Number(b.r.execId !== ""));
  for (const { r, stateDir } of records) {
    if (!r.execId) {
      if (r.pid === 0 && !r.checkpoint) {
        // the create never finished: nothing to adopt
        await rm(stateDir, { recursive: true, force: true });
        continue;
      }
      const runtime = new OciRuntime(r.runtime, runtimeLogPath(stateDir));
      const task: Task = {
        id: r.id,
        namespace: r.namespace,
        bundle: r.bundle,
        runtime,
        driver: driverForRecord(launcher, runtime, r),
        init: new Proc(r, stateDir),
        execs: new Map(),
        cgroups: undefined,
        logFd: openLogFifo(r.bundle),
        ioHold: [],
      };
      tasks.set(r.id, task);
      // Create ran it and no Start confirmed it yet: its exit waits for that Start again.
      holdAfterRestart(task.init);
      await reattachProcess(task, task.init);
      // (not of an exit held until Start: the pid may be another process's by now)
      if (r.pid > 0 && !task.init.exit && !task.init.monitor?.exit) task.cgroups = cgroupPathsOf(r.pid);
    } else {
      const task = tasks.get(r.id);
      if (!task) {
        await rm(stateDir, { recursive: true, force: true });
        continue;
      }
      const proc = new Proc(r, stateDir);
      task.execs.set(r.execId, proc);
      if (r.started || r.pid > 0) await reattachProcess(task, proc);
    }
  }
  return tasks.size;
}

async function reattachProcess(task: Task, proc: Proc): Promise<void> {
  if (proc.record.pid === 0) return; // pending restore
  await task.driver.reattach(task, proc);
}
