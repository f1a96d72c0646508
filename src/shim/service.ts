// containerd.task.v2.Task served for many tasks at once: every RPC is routed by container
// id to its task. A task's processes run under berth-monitors (native/monitor), which hold
// their stdio and exit statuses; this service drives the OCI runtime and keeps the model.
import { constants as fsc, openSync, closeSync, statSync, writeSync } from "node:fs";
import { access, mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";

import {
  TaskCheckpointed,
  TaskCreate,
  TaskDelete,
  TaskExecAdded,
  TaskExecStarted,
  TaskExit,
  TaskOOM,
  TaskPaused,
  TaskResumed,
  TaskStart,
} from "../gen/containerd/events/task.js";
import { CheckpointOptions, Options, ProcessDetails } from "../gen/containerd/runc/options/oci.js";
import type {
  CheckpointTaskRequest,
  CloseIORequest,
  ConnectRequest,
  ConnectResponse,
  CreateTaskRequest,
  CreateTaskResponse,
  DeleteRequest,
  DeleteResponse,
  ExecProcessRequest,
  KillRequest,
  PauseRequest,
  PidsRequest,
  PidsResponse,
  ResizePtyRequest,
  ResumeRequest,
  ShutdownRequest,
  StartRequest,
  StartResponse,
  StateRequest,
  StateResponse,
  StatsRequest,
  StatsResponse,
  UpdateTaskRequest,
  WaitRequest,
  WaitResponse,
} from "../gen/containerd/runtime/v2/task/shim.js";
import { Status } from "../gen/containerd/types/task/task.js";
import type { Empty } from "../gen/google/protobuf/empty.js";
import { NAMESPACE_METADATA_KEY, type CallContext } from "../ttrpc/index.js";
import { AlreadyExistsError, FailedPreconditionError, InvalidArgumentError, NotFoundError } from "../util/errors.js";
import { Topics, type EventEncoder, type Publisher } from "./events.js";
import { Monitor, type ExitRecord, type MonitorOptions } from "./monitor.js";
import { mountAll, unmountAll } from "./mounts.js";
import { processStateDir } from "./paths.js";
import { Proc, loadRecord, toTimestamp, type ProcessRecord } from "./process.js";
import {
  OciRuntime,
  RuntimeError,
  lastRuntimeError,
  runtimeError,
  runtimeLogPath,
  type RuntimeConfig,
} from "./runtime.js";
import {
  isSubcontainerBundle,
  killRunscExec,
  openGate,
  runscMetrics,
  execInternalPidFile,
  subcontainerStartArgv,
  subcontainerTerminalArgv,
  terminalFiles,
  waitTerminalCreated,
} from "./runsc.js";
import { cgroupPathsOf, collectMetrics, metricsAny } from "./stats.js";
import { traceRuntime } from "./trace.js";
import { sleep } from "../util/sleep.js";

export const SHIM_VERSION = "berth-shim 0.1.0";
const OPTIONS_TYPES = new Set(["containerd.runc.v1.Options", "type.googleapis.com/containerd.runc.v1.Options"]);

export interface ServiceConfig {
  /** socket/state root (paths.ts) */
  root: string;
  group: string;
  /** namespace the shim was started for; calls may carry their own in metadata */
  namespace: string;
  publisher: Publisher;
  monitorBin: string;
  /** fd the monitors write their diagnostics to */
  logFd?: number;
  log: (msg: string) => void;
  /** Called after Shutdown when no task is left. */
  onEmpty: () => void;
  /** Base of default runtime roots: <base>/<runtime>/<namespace> (default /run/berth). */
  runtimeRootBase?: string;
}

interface Task {
  id: string;
  namespace: string;
  bundle: string;
  runtime: OciRuntime;
  init: Proc;
  execs: Map<string, Proc>;
  /** controller -> cgroup path, captured while the init process lives */
  cgroups: Map<string, string> | undefined;
  /** containerd's per-task shim log fifo (<bundle>/log), when someone reads it */
  logFd: number | undefined;
  /**
   * A runsc sub-container's output fifos, held open from Create until its monitor has them
   * (at Start): whoever reads them must not see EOF before the process even started.
   */
  ioHold: number[];
}

type Ev<T> = [string, EventEncoder<T>, T];

export class TaskService {
  private readonly tasks = new Map<string, Task>();

  constructor(private readonly cfg: ServiceConfig) {}

  get taskCount(): number {
    return this.tasks.size;
  }

  // ---- helpers -------------------------------------------------------------------------

  private ns(ctx?: CallContext): string {
    return ctx?.metadata.get(NAMESPACE_METADATA_KEY)?.[0] || this.cfg.namespace;
  }

  private publish<T>(task: Task, topic: string, [typeName, codec, event]: Ev<T>): void {
    this.cfg.publisher.publish(task.namespace, topic, typeName, codec, event);
  }

  private taskLog(task: Task, msg: string): void {
    this.cfg.log(`[${task.id}] ${msg}`);
    if (task.logFd === undefined) return;
    try {
      writeSync(
        task.logFd,
        `time="${new Date().toISOString()}" level=info msg=${JSON.stringify(msg)} runtime=io.containerd.berth.v2\n`,
      );
    } catch {
      closeQuietly(task.logFd);
      task.logFd = undefined;
    }
  }

  private task(id: string): Task {
    const t = this.tasks.get(id);
    if (!t) throw new NotFoundError(`task ${id} not found`);
    return t;
  }

  private proc(id: string, execId: string): { task: Task; proc: Proc } {
    const task = this.task(id);
    if (!execId) return { task, proc: task.init };
    const proc = task.execs.get(execId);
    if (!proc) throw new NotFoundError(`exec ${execId} of task ${id} not found`);
    return { task, proc };
  }

  private runtimeConfig(options: CreateTaskRequest["options"], namespace: string): RuntimeConfig {
    let o: Options = Options.fromPartial({});
    if (options && options.value.length > 0) {
      if (!OPTIONS_TYPES.has(options.typeUrl)) {
        throw new InvalidArgumentError(
          `unsupported create options type ${options.typeUrl}: want containerd.runc.v1.Options`,
        );
      }
      o = Options.decode(options.value);
    }
    const binary = o.binaryName || "runc";
    const kind = binary.trim().split(/\s+/)[0]!.split("/").pop()!;
    const base = this.cfg.runtimeRootBase ?? process.env.BERTH_SHIM_RUNTIME_ROOT ?? "/run/berth";
    return {
      binary,
      root: o.root || join(base, kind, namespace),
      systemdCgroup: o.systemdCgroup,
      noPivotRoot: o.noPivotRoot,
      noNewKeyring: o.noNewKeyring,
      criuPath: o.criuPath,
    };
  }

  /** Monitor options for a process's stdio (fifo paths, file:// and binary:// URIs). */
  private async stdio(r: ProcessRecord): Promise<Pick<MonitorOptions, "stdin" | "stdout" | "stderr" | "logger">> {
    const out: Pick<MonitorOptions, "stdin" | "stdout" | "stderr" | "logger"> = { stdin: r.stdin || undefined };
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

  private watch(task: Task, proc: Proc, monitor: Monitor): void {
    proc.monitor = monitor;
    monitor.on("exited", (e) => void this.onExit(task, proc, e));
    if (!proc.execId) {
      monitor.on("oom", () => {
        this.taskLog(task, "OOM");
        this.publish(task, Topics.oom, ["containerd.events.TaskOOM", TaskOOM, { containerId: task.id }]);
      });
    }
  }

  private async onExit(task: Task, proc: Proc, e: ExitRecord): Promise<void> {
    if (proc.starting) await proc.starting.catch(() => {});
    if (proc.exit) return;
    proc.setExited(e);
    this.taskLog(
      task,
      `${proc.execId ? `exec ${proc.execId}` : "init"} pid ${proc.pid} exited with status ${e.status}`,
    );
    // An exit that happened while no shim was serving is published by the shim that
    // re-adopts it; the marker keeps a restarted shim from publishing it twice.
    const marker = join(proc.stateDir, "exit-published");
    if (
      await access(marker).then(
        () => true,
        () => false,
      )
    )
      return;
    await writeFile(marker, "").catch(() => {});
    this.publish(task, Topics.exit, [
      "containerd.events.TaskExit",
      TaskExit,
      {
        containerId: task.id,
        id: proc.execId || task.id,
        pid: proc.pid,
        exitStatus: e.status,
        exitedAt: toTimestamp(e),
      },
    ]);
  }

  /** Spawns a monitor that runs argv and waits for the process to exist. */
  private async spawnProcess(task: Task, proc: Proc, argv: string[], logFile: string, what?: "start"): Promise<number> {
    const r = proc.record;
    const stdio = await this.stdio(r);
    const sub = what ?? (argv.includes("exec") ? "exec" : argv.includes("restore") ? "restore" : "create");
    // The monitor runs the command; it is done when the monitor reports the pid (or a failure).
    return traceRuntime(
      `${task.runtime.kind} ${sub}`,
      { "container.id": task.id, "runtime.via": "berth-monitor" },
      async () => {
        const monitor = Monitor.spawn(this.cfg.monitorBin, {
          stateDir: proc.stateDir,
          argv,
          consoleSocket: r.terminal ? join(proc.stateDir, "console.sock") : undefined,
          ...stdio,
          watchOom: !proc.execId && task.runtime.kind !== "runsc",
          logFd: this.cfg.logFd,
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

  /**
   * Creates a runsc sub-container with a terminal: runsc sends the pty's master at create, so its
   * monitor runs from now on, through a wrapper that waits for Start (runsc.ts). Returns the
   * sandbox pid runsc reports for it.
   */
  private async createRunscTerminal(task: Task, logFile: string): Promise<number> {
    const proc = task.init;
    const stdio = await this.stdio(proc.record);
    return traceRuntime("runsc create", { "container.id": task.id, "runtime.via": "berth-monitor" }, async () => {
      const monitor = Monitor.spawn(this.cfg.monitorBin, {
        stateDir: proc.stateDir,
        argv: subcontainerTerminalArgv(task.runtime, task.id, task.bundle, proc.stateDir, logFile),
        consoleSocket: terminalFiles(proc.stateDir).consoleSocket,
        ...stdio,
        logFd: this.cfg.logFd,
      });
      this.watch(task, proc, monitor);
      try {
        return await waitTerminalCreated(proc.stateDir, monitor.ready());
      } catch (err) {
        const msg = (await lastRuntimeError(logFile)) || (err as Error).message;
        throw runtimeError("runsc create", msg);
      }
    });
  }

  // ---- Task service --------------------------------------------------------------------

  async create(req: CreateTaskRequest, ctx?: CallContext): Promise<CreateTaskResponse> {
    if (!req.id) throw new InvalidArgumentError("create: id is required");
    if (this.tasks.has(req.id)) throw new AlreadyExistsError(`task ${req.id} already exists`);
    const namespace = this.ns(ctx);
    const runtimeCfg = this.runtimeConfig(req.options, namespace);
    const stateDir = processStateDir(this.cfg.root, this.cfg.group, req.id, "");
    await rm(stateDir, { recursive: true, force: true });
    await mkdir(stateDir, { recursive: true, mode: 0o700 });
    const logFile = runtimeLogPath(stateDir);
    const record: ProcessRecord = {
      namespace,
      id: req.id,
      execId: "",
      bundle: req.bundle,
      stdin: req.stdin,
      stdout: req.stdout,
      stderr: req.stderr,
      terminal: req.terminal,
      runtime: runtimeCfg,
      rootfs: req.rootfs.map((m) => ({ type: m.type, source: m.source, target: m.target, options: m.options })),
      checkpoint: req.checkpoint,
      pid: 0,
      started: false,
    };
    const task: Task = {
      id: req.id,
      namespace,
      bundle: req.bundle,
      runtime: new OciRuntime(runtimeCfg, logFile),
      init: new Proc(record, stateDir),
      execs: new Map(),
      cgroups: undefined,
      logFd: openLogFifo(req.bundle),
      ioHold: [],
    };
    this.tasks.set(req.id, task); // reserve the id while creating
    const rootfs = join(req.bundle, "rootfs");
    try {
      if (req.rootfs.length > 0) await mountAll(req.rootfs, rootfs);
      if (task.runtime.kind === "runsc" && !req.checkpoint && (await isSubcontainerBundle(req.bundle))) {
        record.runscSubcontainer = true;
      }
      await task.init.save();
      if (record.runscSubcontainer && req.terminal) {
        record.pid = await this.createRunscTerminal(task, logFile);
        await task.init.save();
      } else if (record.runscSubcontainer) {
        // No monitor yet: the container's process and stdio only come with `runsc start`.
        task.ioHold = holdFifos([req.stdout, req.stderr]);
        const pidFile = join(stateDir, "sandbox.pid");
        await task.runtime.createDetached(req.id, req.bundle, pidFile);
        record.pid = Number((await readFile(pidFile, "utf8")).trim()) || 0;
        if (record.pid <= 0) throw new RuntimeError(`runsc create wrote no pid to ${pidFile}`);
        await task.init.save();
      } else if (!req.checkpoint) {
        const argv = task.runtime.createArgv(
          req.id,
          req.bundle,
          join(stateDir, "pid"),
          req.terminal ? join(stateDir, "console.sock") : undefined,
          logFile,
        );
        record.pid = await this.spawnProcess(task, task.init, argv, logFile);
        task.cgroups = await cgroupPathsOf(record.pid);
        await task.init.save();
      }
    } catch (err) {
      this.tasks.delete(req.id);
      if (record.runscSubcontainer && req.terminal) openGate(stateDir, "abort");
      task.init.monitor?.close();
      releaseFds(task);
      await task.runtime.delete(req.id, true).catch(() => {});
      if (req.rootfs.length > 0) safeUnmount(rootfs);
      await rm(stateDir, { recursive: true, force: true });
      closeQuietly(task.logFd);
      throw err;
    }
    this.taskLog(task, `created pid ${record.pid} with ${task.runtime.kind}`);
    this.publish(task, Topics.create, [
      "containerd.events.TaskCreate",
      TaskCreate,
      {
        containerId: req.id,
        bundle: req.bundle,
        rootfs: req.rootfs,
        io: { stdin: req.stdin, stdout: req.stdout, stderr: req.stderr, terminal: req.terminal },
        checkpoint: req.checkpoint,
        pid: record.pid,
      },
    ]);
    return { pid: record.pid };
  }

  async start(req: StartRequest): Promise<StartResponse> {
    const { task, proc } = this.proc(req.id, req.execId);
    if (proc.record.started || proc.status !== Status.CREATED) {
      throw new FailedPreconditionError(`${req.execId ? `exec ${req.execId}` : `task ${req.id}`} is already started`);
    }
    const run = async () => {
      if (!req.execId) {
        if (proc.record.checkpoint) {
          const logFile = runtimeLogPath(proc.stateDir);
          const argv = task.runtime.restoreArgv(
            task.id,
            task.bundle,
            proc.record.checkpoint,
            join(proc.stateDir, "criu-work"),
            join(proc.stateDir, "pid"),
            proc.record.terminal ? join(proc.stateDir, "console.sock") : undefined,
            logFile,
          );
          proc.record.pid = await this.spawnProcess(task, proc, argv, logFile);
          task.cgroups = await cgroupPathsOf(proc.record.pid);
        } else if (proc.record.runscSubcontainer && proc.record.terminal) {
          // The monitor from Create holds the pty; its wrapper starts the container at the gate.
          const logFile = runtimeLogPath(proc.stateDir);
          const monitor = proc.monitor;
          if (!monitor || !openGate(proc.stateDir, "start")) {
            throw new FailedPreconditionError(
              `task ${task.id}: its runsc create wrapper is gone; delete and create it again`,
            );
          }
          proc.record.pid = await traceRuntime(
            "runsc start",
            { "container.id": task.id, "runtime.via": "berth-monitor" },
            () =>
              monitor.ready().catch(async () => {
                throw runtimeError("runsc start", (await lastRuntimeError(logFile)) || "runsc start failed");
              }),
          );
        } else if (proc.record.runscSubcontainer) {
          const logFile = runtimeLogPath(proc.stateDir);
          const argv = subcontainerStartArgv(task.runtime, task.id, join(proc.stateDir, "pid"), logFile);
          try {
            proc.record.pid = await this.spawnProcess(task, proc, argv, logFile, "start");
          } finally {
            releaseFds(task); // the monitor holds the fifos now (or the start failed)
          }
        } else {
          await task.runtime.start(task.id);
        }
      } else {
        if (task.init.status !== Status.RUNNING && task.init.status !== Status.PAUSED) {
          throw new FailedPreconditionError(`task ${task.id} is not running`);
        }
        const logFile = runtimeLogPath(proc.stateDir);
        const argv = task.runtime.execArgv(
          task.id,
          join(proc.stateDir, "process.json"),
          join(proc.stateDir, "pid"),
          proc.record.terminal ? join(proc.stateDir, "console.sock") : undefined,
          logFile,
          task.runtime.kind === "runsc" ? execInternalPidFile(proc.stateDir) : undefined,
        );
        proc.record.pid = await this.spawnProcess(task, proc, argv, logFile);
      }
      proc.record.started = true;
      if (!proc.exit) proc.status = Status.RUNNING;
      await proc.save();
      if (req.execId) {
        this.publish(task, Topics.execStarted, [
          "containerd.events.TaskExecStarted",
          TaskExecStarted,
          { containerId: task.id, execId: req.execId, pid: proc.pid },
        ]);
      } else {
        this.publish(task, Topics.start, [
          "containerd.events.TaskStart",
          TaskStart,
          { containerId: task.id, pid: proc.pid },
        ]);
      }
    };
    const p = run();
    proc.starting = p;
    try {
      await p;
    } finally {
      proc.starting = undefined;
    }
    this.taskLog(task, `started ${req.execId ? `exec ${req.execId}` : "init"} pid ${proc.pid}`);
    return { pid: proc.pid };
  }

  async delete(req: DeleteRequest): Promise<DeleteResponse> {
    const { task, proc } = this.proc(req.id, req.execId);
    if (proc.status !== Status.STOPPED && !(proc.status === Status.CREATED && !proc.record.started)) {
      throw new FailedPreconditionError(
        `${req.execId ? `exec ${req.execId}` : `task ${req.id}`} must be stopped before delete`,
      );
    }
    if (req.execId) {
      proc.monitor?.close();
      task.execs.delete(req.execId);
      await rm(proc.stateDir, { recursive: true, force: true });
      return { pid: proc.pid, exitStatus: proc.exit?.status ?? 0, exitedAt: toTimestamp(proc.exit) };
    }
    await task.runtime.delete(task.id, true);
    if (proc.record.runscSubcontainer && proc.record.terminal && !proc.record.started && proc.monitor) {
      // Its create wrapper waits at the gate: end it, and with it the monitor.
      openGate(proc.stateDir, "abort");
      await Promise.race([proc.monitor.ready().catch(() => {}), sleep(2000, { unref: true })]);
    } else if (!proc.exit && proc.monitor) {
      // A created, never started init: the runtime killed it; take its exit from the monitor.
      await Promise.race([proc.wait(), sleep(2000, { unref: true })]);
    }
    if (proc.record.rootfs.length > 0) safeUnmount(join(task.bundle, "rootfs"));
    for (const e of task.execs.values()) {
      e.monitor?.close();
      await rm(e.stateDir, { recursive: true, force: true });
    }
    proc.monitor?.close();
    releaseFds(task);
    await rm(proc.stateDir, { recursive: true, force: true });
    this.tasks.delete(task.id);
    const exit = proc.exit;
    this.taskLog(task, `deleted`);
    closeQuietly(task.logFd);
    this.publish(task, Topics.delete, [
      "containerd.events.TaskDelete",
      TaskDelete,
      { containerId: task.id, pid: proc.pid, exitStatus: exit?.status ?? 0, exitedAt: toTimestamp(exit), id: "" },
    ]);
    return { pid: proc.pid, exitStatus: exit?.status ?? 0, exitedAt: toTimestamp(exit) };
  }

  async state(req: StateRequest): Promise<StateResponse> {
    const { task, proc } = this.proc(req.id, req.execId);
    const r = proc.record;
    return {
      id: req.execId || task.id,
      bundle: task.bundle,
      pid: proc.pid,
      status: proc.status,
      stdin: r.stdin,
      stdout: r.stdout,
      stderr: r.stderr,
      terminal: r.terminal,
      exitStatus: proc.exit?.status ?? 0,
      exitedAt: toTimestamp(proc.exit),
      execId: req.execId,
    };
  }

  async pids(req: PidsRequest): Promise<PidsResponse> {
    const task = this.task(req.id);
    const pids = await task.runtime.ps(task.id);
    const execByPid = new Map<number, string>();
    for (const e of task.execs.values()) if (e.pid > 0 && !e.exit) execByPid.set(e.pid, e.execId);
    return {
      processes: pids.map((pid) => {
        const execId = execByPid.get(pid);
        return {
          pid,
          info: execId
            ? {
                typeUrl: "containerd.runc.v1.ProcessDetails",
                value: Buffer.from(ProcessDetails.encode({ execId }).finish()),
              }
            : undefined,
        };
      }),
    };
  }

  async pause(req: PauseRequest): Promise<Empty> {
    const task = this.task(req.id);
    if (task.init.status !== Status.RUNNING) throw new FailedPreconditionError(`task ${req.id} is not running`);
    task.init.status = Status.PAUSING;
    try {
      await task.runtime.pause(task.id);
    } catch (err) {
      if (!task.init.exit) task.init.status = Status.RUNNING;
      throw err;
    }
    if (!task.init.exit) task.init.status = Status.PAUSED;
    this.publish(task, Topics.paused, ["containerd.events.TaskPaused", TaskPaused, { containerId: task.id }]);
    return {};
  }

  async resume(req: ResumeRequest): Promise<Empty> {
    const task = this.task(req.id);
    if (task.init.status !== Status.PAUSED) throw new FailedPreconditionError(`task ${req.id} is not paused`);
    await task.runtime.resume(task.id);
    if (!task.init.exit) task.init.status = Status.RUNNING;
    this.publish(task, Topics.resumed, ["containerd.events.TaskResumed", TaskResumed, { containerId: task.id }]);
    return {};
  }

  async checkpoint(req: CheckpointTaskRequest): Promise<Empty> {
    const task = this.task(req.id);
    if (task.runtime.kind === "runsc")
      throw new FailedPreconditionError("checkpoint through berth's shim is not supported for runsc");
    const criu = task.runtime.config.criuPath || (await which("criu"));
    if (!criu) throw new FailedPreconditionError("checkpoint needs CRIU: install criu (Debian package `criu`)");
    if (task.init.status !== Status.RUNNING && task.init.status !== Status.PAUSED) {
      throw new FailedPreconditionError(`task ${req.id} is not running`);
    }
    const o =
      req.options && req.options.value.length > 0
        ? CheckpointOptions.decode(req.options.value)
        : CheckpointOptions.fromPartial({});
    const imagePath = o.imagePath || req.path;
    if (!imagePath) throw new InvalidArgumentError("checkpoint: an image path is required");
    const workPath = o.workPath || join(task.init.stateDir, "criu-work");
    await mkdir(imagePath, { recursive: true });
    await mkdir(workPath, { recursive: true });
    await task.runtime.checkpoint(task.id, {
      imagePath,
      workPath,
      exit: o.exit,
      openTcp: o.openTcp,
      externalUnixSockets: o.externalUnixSockets,
      terminal: o.terminal || task.init.record.terminal,
      fileLocks: o.fileLocks,
      emptyNamespaces: o.emptyNamespaces,
      cgroupsMode: o.cgroupsMode,
      parentPath: o.parentPath,
    });
    this.publish(task, Topics.checkpointed, [
      "containerd.events.TaskCheckpointed",
      TaskCheckpointed,
      { containerId: task.id, checkpoint: req.path },
    ]);
    return {};
  }

  async kill(req: KillRequest): Promise<Empty> {
    const { task, proc } = this.proc(req.id, req.execId);
    if (proc.exit) throw new NotFoundError(`process ${req.execId || req.id} already finished`);
    if (req.execId) {
      if (proc.pid <= 0) throw new FailedPreconditionError(`exec ${req.execId} is not started`);
      if (task.runtime.kind === "runsc") {
        // The exec's pid is runsc's host-side process: the signal must reach the sandbox.
        await killRunscExec(task.runtime, task.id, proc.stateDir, proc.pid, req.signal);
        return {};
      }
      try {
        process.kill(proc.pid, req.signal);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ESRCH")
          throw new NotFoundError(`process ${req.execId} already finished`);
        throw err;
      }
      return {};
    }
    if (proc.record.checkpoint && !proc.record.started) {
      // nothing runs yet: a pending restore just ends
      proc.setExited(nowExit(128 + req.signal));
      return {};
    }
    await task.runtime.kill(task.id, req.signal, req.all);
    return {};
  }

  async exec(req: ExecProcessRequest, _ctx?: CallContext): Promise<Empty> {
    const task = this.task(req.id);
    if (!req.execId) throw new InvalidArgumentError("exec: exec_id is required");
    if (task.execs.has(req.execId)) throw new AlreadyExistsError(`exec ${req.execId} already exists in task ${req.id}`);
    if (task.init.exit) throw new FailedPreconditionError(`task ${req.id} is stopped`);
    if (!req.spec || req.spec.value.length === 0) throw new InvalidArgumentError("exec: a process spec is required");
    const stateDir = processStateDir(this.cfg.root, this.cfg.group, req.id, req.execId);
    await rm(stateDir, { recursive: true, force: true });
    await mkdir(stateDir, { recursive: true, mode: 0o700 });
    await writeFile(join(stateDir, "process.json"), req.spec.value, { mode: 0o600 });
    const proc = new Proc(
      {
        namespace: task.namespace,
        id: req.id,
        execId: req.execId,
        bundle: task.bundle,
        stdin: req.stdin,
        stdout: req.stdout,
        stderr: req.stderr,
        terminal: req.terminal,
        runtime: task.runtime.config,
        rootfs: [],
        checkpoint: "",
        pid: 0,
        started: false,
      },
      stateDir,
    );
    await proc.save();
    task.execs.set(req.execId, proc);
    this.publish(task, Topics.execAdded, [
      "containerd.events.TaskExecAdded",
      TaskExecAdded,
      { containerId: task.id, execId: req.execId },
    ]);
    return {};
  }

  async resizePty(req: ResizePtyRequest): Promise<Empty> {
    const { proc } = this.proc(req.id, req.execId);
    if (!proc.record.terminal) throw new FailedPreconditionError(`process ${req.execId || req.id} has no terminal`);
    proc.monitor?.resize(req.width, req.height);
    return {};
  }

  async closeIO(req: CloseIORequest): Promise<Empty> {
    const { proc } = this.proc(req.id, req.execId);
    if (req.stdin) proc.monitor?.closeStdin();
    return {};
  }

  async update(req: UpdateTaskRequest): Promise<Empty> {
    const task = this.task(req.id);
    if (!req.resources || req.resources.value.length === 0)
      throw new InvalidArgumentError("update: resources are required");
    await task.runtime.update(task.id, Buffer.from(req.resources.value));
    return {};
  }

  async wait(req: WaitRequest, ctx?: CallContext): Promise<WaitResponse> {
    const { proc } = this.proc(req.id, req.execId);
    const e = await (ctx ? abortable(proc.wait(), ctx.signal) : proc.wait());
    return { exitStatus: e.status, exitedAt: toTimestamp(e) };
  }

  async stats(req: StatsRequest): Promise<StatsResponse> {
    const task = this.task(req.id);
    if (task.runtime.kind === "runsc") {
      // gVisor's processes run inside its sandbox: only the sentry can account for them.
      if (task.init.exit) throw new FailedPreconditionError(`task ${req.id} has exited`);
      return { stats: metricsAny(await runscMetrics(task.runtime, task.id)) };
    }
    let paths = task.cgroups;
    if (!paths || paths.size === 0) {
      if (task.init.pid > 0 && !task.init.exit) paths = task.cgroups = await cgroupPathsOf(task.init.pid);
    }
    if (!paths || paths.size === 0) throw new NotFoundError(`no cgroup known for task ${req.id}`);
    return { stats: metricsAny(await collectMetrics(paths)) };
  }

  async connect(req: ConnectRequest): Promise<ConnectResponse> {
    const t = this.tasks.get(req.id);
    return { shimPid: process.pid, taskPid: t?.init.pid ?? 0, version: SHIM_VERSION };
  }

  async shutdown(_req: ShutdownRequest): Promise<Empty> {
    // Many tasks share this shim: containerd asks every task's shim to shut down after
    // its delete, and only the last one really ends it.
    if (this.tasks.size === 0) setImmediate(() => this.cfg.onEmpty());
    return {};
  }

  // ---- re-adoption ---------------------------------------------------------------------

  /** Rebuilds the model from the state dir after a (re)start of the serving shim. */
  async adopt(): Promise<number> {
    const dir = join(this.cfg.root, this.cfg.group, "p");
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
        const task: Task = {
          id: r.id,
          namespace: r.namespace,
          bundle: r.bundle,
          runtime: new OciRuntime(r.runtime, runtimeLogPath(stateDir)),
          init: new Proc(r, stateDir),
          execs: new Map(),
          cgroups: undefined,
          logFd: openLogFifo(r.bundle),
          ioHold: [],
        };
        this.tasks.set(r.id, task);
        await this.adoptProcess(task, task.init);
        if (r.pid > 0 && !task.init.exit) task.cgroups = await cgroupPathsOf(r.pid);
      } else {
        const task = this.tasks.get(r.id);
        if (!task) {
          await rm(stateDir, { recursive: true, force: true });
          continue;
        }
        const proc = new Proc(r, stateDir);
        task.execs.set(r.execId, proc);
        if (r.started || r.pid > 0) await this.adoptProcess(task, proc);
      }
    }
    return this.tasks.size;
  }

  private async adoptProcess(task: Task, proc: Proc): Promise<void> {
    const r = proc.record;
    if (r.pid === 0) return; // pending restore
    if (r.runscSubcontainer && !r.started) {
      // Created in the sandbox, no process of its own yet; one with a terminal has its monitor
      // (holding the pty) waiting for Start.
      if (r.terminal) this.watch(task, proc, await Monitor.adopt(proc.stateDir, 0));
      return;
    }
    const monitor = await Monitor.adopt(proc.stateDir, r.pid);
    this.watch(task, proc, monitor);
    if (monitor.exit) await this.onExit(task, proc, monitor.exit);
    if (proc.exit) return;
    proc.status = r.started ? Status.RUNNING : Status.CREATED;
    if (!proc.execId) {
      // the runtime knows whether it is paused
      const st = await task.runtime.state(task.id).catch(() => undefined);
      if (st?.status === "paused") proc.status = Status.PAUSED;
      else if (st?.status === "created") proc.status = Status.CREATED;
    }
  }

  /** Ends every task's bookkeeping without touching the processes (shim exit). */
  detachAll(): void {
    for (const t of this.tasks.values()) {
      t.init.monitor?.close();
      for (const e of t.execs.values()) e.monitor?.close();
      closeQuietly(t.logFd);
    }
  }
}

function nowExit(status: number): ExitRecord {
  const now = Date.now();
  return { status, seconds: BigInt(Math.floor(now / 1000)), nanos: (now % 1000) * 1e6 };
}

/**
 * containerd (1.6+) reads the shim's log from the fifo <bundle>/log. The serving shim is
 * shared, so it writes each task's own lines into that task's fifo, when one is there.
 */
function openLogFifo(bundle: string): number | undefined {
  try {
    return openSync(join(bundle, "log"), fsc.O_WRONLY | fsc.O_NONBLOCK);
  } catch {
    return undefined;
  }
}

/** Opens the fifos among `dests` (plain or fifo:// paths) read-write, as a monitor does. */
function holdFifos(dests: string[]): number[] {
  const fds: number[] = [];
  for (const d of new Set(dests)) {
    if (!d || d.startsWith("file://") || d.startsWith("binary://")) continue;
    const path = d.startsWith("fifo://") ? d.slice("fifo://".length) : d;
    try {
      if (!statSync(path).isFIFO()) continue;
      fds.push(openSync(path, fsc.O_RDWR | fsc.O_NONBLOCK));
    } catch {
      // not there: the monitor reports it at Start
    }
  }
  return fds;
}

function releaseFds(task: Task): void {
  for (const fd of task.ioHold.splice(0)) closeQuietly(fd);
}

function closeQuietly(fd: number | undefined): void {
  if (fd === undefined) return;
  try {
    closeSync(fd);
  } catch {
    // already closed
  }
}

function safeUnmount(target: string): void {
  try {
    unmountAll(target);
  } catch {
    // reported by the runtime's delete or left for `delete` to retry
  }
}

async function which(cmd: string): Promise<string | undefined> {
  for (const dir of (process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin").split(":")) {
    const p = join(dir, cmd);
    try {
      await access(p, fsc.X_OK);
      return p;
    } catch {
      // next
    }
  }
  return undefined;
}

function abortable<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener("abort", onAbort);
        reject(e);
      },
    );
  });
}
