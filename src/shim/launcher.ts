// Running a process under a berth-monitor (native/monitor): the monitor runs the runtime
// command, holds the process's stdio and reports its pid, its exit and (init only) OOMs.
import { mkdir } from "node:fs/promises";
import { dirname, join } from "node:path";

import { Monitor, type ExitRecord, type MonitorOptions } from "./monitor.js";
import type { Proc, ProcessRecord } from "./process.js";
import { lastRuntimeError, runtimeError } from "./runtime.js";
import type { Task } from "./task.js";
import { traceRuntime } from "./trace.js";

export type Stdio = Pick<MonitorOptions, "stdin" | "stdout" | "stderr" | "logger">;

/** What the service does when a watched process exits or its task runs out of memory. */
export interface ProcessWatcher {
  exited(task: Task, proc: Proc, e: ExitRecord): Promise<void>;
  oom(task: Task): void;
}

export class ProcessLauncher {
  constructor(
    readonly monitorBin: string,
    /** fd the monitors write their diagnostics to */
    readonly logFd: number | undefined,
    private readonly watcher: ProcessWatcher,
  ) {}

  /** Monitor options for a process's stdio (fifo paths, file:// and binary:// URIs). */
  async stdio(r: ProcessRecord): Promise<Stdio> {
    const out: Stdio = { stdin: r.stdin || undefined };
    const dest = async (uri: string): Promise<string | undefined> => {
      if (!uri) return undefined;
      if (uri.startsWith("binary://")) return undefined;
      if (uri.startsWith("file://")) {
        const p = decodeURIComponent(new URL(uri).pathname);
        await mkdir(dirname(p), { recursive: true });
        return p;
      }
      if (uri.startsWith("fifo://")) return uri.slice("fifo://".length);
      return uri;
    };
    out.stdout = await dest(r.stdout);
    out.stderr = r.terminal ? undefined : await dest(r.stderr);
    const bin = [r.stdout, r.stderr].find((u) => u.startsWith("binary://"));
    if (bin) {
      // containerd's rule: binary:///path?k=v -> path k v, with CONTAINER_ID/NAMESPACE set
      const u = new URL(bin);
      const args: string[] = [];
      for (const [k, v] of u.searchParams) args.push(k, ...(v ? [v] : []));
      out.logger = { path: decodeURIComponent(u.pathname), args, id: r.id, namespace: r.namespace };
    }
    return out;
  }

  /** Hands an exit the monitor already knew (a process that ended while no shim served it) to the watcher. */
  exited(task: Task, proc: Proc, e: ExitRecord): Promise<void> {
    return this.watcher.exited(task, proc, e);
  }

  /** Makes `monitor` the process's and routes its exit (and the init's OOMs) to the watcher. */
  watch(task: Task, proc: Proc, monitor: Monitor): void {
    proc.monitor = monitor;
    monitor.on("exited", (e) => void this.watcher.exited(task, proc, e));
    if (!proc.execId) monitor.on("oom", () => this.watcher.oom(task));
  }

  /** Spawns a monitor that runs argv and waits for the process to exist. */
  async spawn(
    task: Task,
    proc: Proc,
    argv: string[],
    logFile: string,
    what?: "start" | "run" | "create",
  ): Promise<number> {
    const r = proc.record;
    const stdio = await this.stdio(r);
    const sub = what ?? (argv.includes("exec") ? "exec" : argv.includes("restore") ? "restore" : "create");
    // The monitor runs the command; it is done when the monitor reports the pid (or a failure).
    return traceRuntime(
      `${task.runtime.kind} ${sub}`,
      { "container.id": task.id, "runtime.via": "berth-monitor" },
      async () => {
        const monitor = Monitor.spawn(this.monitorBin, {
          stateDir: proc.stateDir,
          argv,
          consoleSocket: r.terminal ? join(proc.stateDir, "console.sock") : undefined,
          ...stdio,
          watchOom: !proc.execId && task.driver.watchOom,
          logFd: this.logFd,
        });
        this.watch(task, proc, monitor);
        try {
          return await monitor.ready();
        } catch {
          const msg = (await lastRuntimeError(logFile)) || `${task.runtime.kind} failed`;
          monitor.close();
          throw runtimeError(`${task.runtime.kind} ${sub === "restore" ? "create" : sub}`, msg);
        }
      },
    );
  }
}
