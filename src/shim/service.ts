// containerd.task.v2.Task served for many tasks at once: every RPC is routed by container
// id to its task, and to the task's process driver (driver.ts) for what differs between
// runtimes. A task's processes run under berth-monitors (launcher.ts), which hold their stdio
// and exit statuses; a process's status changes only through its state table
// (process-state.ts). This service checks requests, keeps the model and publishes events.
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";

import {
  TaskCheckpointed,
  TaskCreate,
  TaskDelete,
  TaskExecAdded,
  TaskExecStarted,
  TaskPaused,
  TaskResumed,
  TaskStart,
} from "../gen/containerd/events/task.js";
import { ProcessDetails } from "../gen/containerd/runc/options/oci.js";
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
import type { Empty } from "../gen/google/protobuf/empty.js";
import { NAMESPACE_METADATA_KEY, type CallContext } from "../ttrpc/index.js";
import { abortable } from "../util/abortable.js";
import { AlreadyExistsError, FailedPreconditionError, InvalidArgumentError, NotFoundError } from "../util/errors.js";
import { ownCgroupPrimer, type CgroupPrimer } from "./cgroup-prime.js";
import { driverForCreate } from "./driver.js";
import { Topics, type Publisher } from "./events.js";
import { ProcessLauncher } from "./launcher.js";
import { mountAll } from "./mounts.js";
import { processStateDir } from "./paths.js";
import { Proc, toTimestamp } from "./process.js";
import { reattachAll } from "./reattach.js";
import { START_AT_ONCE_METADATA_KEY, START_CONFIRMED_METADATA_KEY, confirmAtCreate } from "./start-at-once.js";
import { OciRuntime, runtimeConfigFrom, runtimeLogPath } from "./runtime.js";
import {
  type Task,
  closeQuietly,
  execRecord,
  initRecord,
  openLogFifo,
  releaseFds,
  safeUnmount,
  undoCreate,
} from "./task.js";
import { TaskEvents } from "./task-events.js";

/** 0.2: Create confirms a task it ran at once when asked (START_CONFIRMED_METADATA_KEY). */
export const SHIM_VERSION = "berth-shim 0.2.0";

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
  /** Starts the grace period of the runtime's cgroup joins early (default: the shim's own cgroup). */
  primer?: CgroupPrimer;
}

export class TaskService {
  private readonly tasks = new Map<string, Task>();
  private readonly launcher: ProcessLauncher;
  private readonly events: TaskEvents;
  /** State dirs of deleted execs being removed after Delete answered. */
  private readonly removing = new Map<string, Promise<void>>();
  private readonly primer: CgroupPrimer;

  constructor(private readonly cfg: ServiceConfig) {
    this.events = new TaskEvents(cfg.publisher, cfg.log);
    this.launcher = new ProcessLauncher(cfg.monitorBin, cfg.logFd, this.events);
    this.primer = cfg.primer ?? ownCgroupPrimer((why) => cfg.log(`cgroup priming off: ${why}`));
  }

  get taskCount(): number {
    return this.tasks.size;
  }

  // ---- helpers -------------------------------------------------------------------------

  private ns(ctx?: CallContext): string {
    return ctx?.metadata.get(NAMESPACE_METADATA_KEY)?.[0] || this.cfg.namespace;
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

  /** proc(), once an in-flight Create of the task has settled (Task.creating). */
  private async settledProc(id: string, execId: string): Promise<{ task: Task; proc: Proc }> {
    await this.tasks.get(id)?.creating;
    return this.proc(id, execId);
  }

  private removeLater(dir: string): void {
    const p = rm(dir, { recursive: true, force: true })
      .catch((err: unknown) => this.cfg.log(`remove ${dir}: ${(err as Error).message}`))
      .finally(() => {
        if (this.removing.get(dir) === p) this.removing.delete(dir);
      });
    this.removing.set(dir, p);
  }

  // ---- Task service --------------------------------------------------------------------

  async create(req: CreateTaskRequest, ctx?: CallContext): Promise<CreateTaskResponse> {
    if (!req.id) throw new InvalidArgumentError("create: id is required");
    if (this.tasks.has(req.id)) throw new AlreadyExistsError(`task ${req.id} already exists`);
    // The runtime will join the new process to its cgroups (cgroup-prime.ts).
    void this.primer.prime();
    const namespace = this.ns(ctx);
    const runtimeCfg = runtimeConfigFrom(req.options, namespace, this.cfg.runtimeRootBase);
    const stateDir = processStateDir(this.cfg.root, this.cfg.group, req.id, "");
    rmSync(stateDir, { recursive: true, force: true });
    mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    const record = initRecord(req, namespace, runtimeCfg);
    const runtime = new OciRuntime(runtimeCfg, runtimeLogPath(stateDir));
    const task: Task = {
      id: req.id,
      namespace,
      bundle: req.bundle,
      runtime,
      driver: await driverForCreate(this.launcher, runtime, record),
      init: new Proc(record, stateDir),
      execs: new Map(),
      cgroups: undefined,
      logFd: openLogFifo(req.bundle),
      ioHold: [],
    };
    this.tasks.set(req.id, task); // reserve the id while creating
    let settled!: () => void;
    task.creating = new Promise<void>((resolve) => (settled = resolve));
    const rootfs = join(req.bundle, "rootfs");
    const startAtOnce = ctx?.metadata.get(START_AT_ONCE_METADATA_KEY)?.[0] === "1";
    const atOnce = startAtOnce && task.driver.canStartAtCreate(task);
    // berthd sends no Start (START_CONFIRMED_METADATA_KEY): this Create leaves the task started.
    const wantsStarted = startAtOnce && ctx?.metadata.get(START_CONFIRMED_METADATA_KEY)?.[0] === "1";
    const confirm = atOnce && wantsStarted;
    if (atOnce) {
      record.startedAtCreate = true;
      // The records this Create writes say so already: no second write to confirm it below.
      if (confirm) record.started = true;
      task.init.holdUntilStart();
    }
    try {
      if (req.rootfs.length > 0) await mountAll(req.rootfs, rootfs);
      await task.init.save();
      await task.driver.create(task, atOnce);
    } catch (err) {
      this.tasks.delete(req.id);
      await undoCreate(task, req.rootfs.length > 0 ? rootfs : undefined, stateDir);
      throw err;
    } finally {
      // A Kill or Delete waiting on it goes on only after the rest of this Create, which runs
      // without a break up to its answer (or to the Start of a driver that cannot run at once).
      task.creating = undefined;
      settled();
    }
    this.events.log(task, `created${atOnce ? " and ran" : ""} pid ${record.pid} with ${task.runtime.kind}`);
    this.events.publish(task, Topics.create, [
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
    if (confirm) confirmAtCreate(task, this.events);
    // A driver that cannot run and start in one step (runsc, a restore) starts it here: berthd
    // sends no Start after a Create it asked to confirm the start.
    if (wantsStarted && !atOnce) return { pid: (await this.start({ id: req.id, execId: "" })).pid };
    return { pid: record.pid };
  }

  async start(req: StartRequest): Promise<StartResponse> {
    const { task, proc } = this.proc(req.id, req.execId);
    if (proc.record.started || !proc.can("start")) {
      throw new FailedPreconditionError(`${req.execId ? `exec ${req.execId}` : `task ${req.id}`} is already started`);
    }
    // Create already ran it (START_AT_ONCE_METADATA_KEY): this Start only makes it known.
    const confirmOnly = !req.execId && proc.awaitingStart;
    const run = async () => {
      if (confirmOnly) {
        // nothing to run
      } else if (!req.execId) {
        await task.driver.start(task);
      } else {
        if (task.init.state !== "running" && task.init.state !== "paused") {
          throw new FailedPreconditionError(`task ${task.id} is not running`);
        }
        await task.driver.startExec(task, proc);
      }
      proc.record.started = true;
      // An exit heard meanwhile (it waits for this start) has not moved the process yet.
      if (!proc.exit && proc.state === "created") proc.to("start");
      await proc.save();
      if (req.execId) {
        this.events.publish(task, Topics.execStarted, [
          "containerd.events.TaskExecStarted",
          TaskExecStarted,
          { containerId: task.id, execId: req.execId, pid: proc.pid },
        ]);
      } else {
        this.events.publish(task, Topics.start, [
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
      // TaskStart is out (or Start failed): an exit held since Create may follow now.
      if (confirmOnly) proc.openStartGate();
    }
    // Execs are not logged one by one (kubelet's probes run one every few seconds per container,
    // and each line costs the shim two writes); a failed Start is answered with its error.
    if (!req.execId) this.events.log(task, `started init pid ${proc.pid}`);
    return { pid: proc.pid };
  }

  async delete(req: DeleteRequest): Promise<DeleteResponse> {
    const { task, proc } = await this.settledProc(req.id, req.execId);
    // A task Create ran that is deleted unstarted: its exit, held for a Start, is let through.
    if (!req.execId) proc.openStartGate();
    // A created process may be deleted only if it never started (a start that failed midway
    // leaves it created but started: it must be killed and stopped first).
    if (!proc.can("delete") || (proc.state === "created" && proc.record.started)) {
      throw new FailedPreconditionError(
        `${req.execId ? `exec ${req.execId}` : `task ${req.id}`} must be stopped before delete`,
      );
    }
    if (req.execId) {
      proc.to("delete");
      proc.monitor?.close();
      task.execs.delete(req.execId);
      // Answered at once: the dir (a handful of small files) goes after, and an Exec reusing the
      // id waits for it (exec()).
      this.removeLater(proc.stateDir);
      return { pid: proc.pid, exitStatus: proc.exit?.status ?? 0, exitedAt: toTimestamp(proc.exit) };
    }
    await task.runtime.delete(task.id, true);
    await task.driver.afterRuntimeDelete(task);
    if (proc.record.rootfs.length > 0) safeUnmount(join(task.bundle, "rootfs"));
    for (const e of task.execs.values()) {
      e.monitor?.close();
      await rm(e.stateDir, { recursive: true, force: true });
    }
    proc.monitor?.close();
    releaseFds(task);
    await rm(proc.stateDir, { recursive: true, force: true });
    this.tasks.delete(task.id);
    if (proc.can("delete")) proc.to("delete");
    const exit = proc.exit;
    this.events.log(task, `deleted`);
    closeQuietly(task.logFd);
    this.events.publish(task, Topics.delete, [
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
    if (!task.init.can("pause")) throw new FailedPreconditionError(`task ${req.id} is not running`);
    task.init.to("pause");
    try {
      await task.runtime.pause(task.id);
    } catch (err) {
      if (!task.init.exit) task.init.to("pauseFailed");
      throw err;
    }
    if (!task.init.exit) task.init.to("paused");
    this.events.publish(task, Topics.paused, ["containerd.events.TaskPaused", TaskPaused, { containerId: task.id }]);
    return {};
  }

  async resume(req: ResumeRequest): Promise<Empty> {
    const task = this.task(req.id);
    if (!task.init.can("resume")) throw new FailedPreconditionError(`task ${req.id} is not paused`);
    await task.runtime.resume(task.id);
    if (!task.init.exit && task.init.can("resume")) task.init.to("resume");
    this.events.publish(task, Topics.resumed, ["containerd.events.TaskResumed", TaskResumed, { containerId: task.id }]);
    return {};
  }

  async checkpoint(req: CheckpointTaskRequest): Promise<Empty> {
    const task = this.task(req.id);
    await task.driver.checkpoint(task, req);
    this.events.publish(task, Topics.checkpointed, [
      "containerd.events.TaskCheckpointed",
      TaskCheckpointed,
      { containerId: task.id, checkpoint: req.path },
    ]);
    return {};
  }

  async kill(req: KillRequest): Promise<Empty> {
    const { task, proc } = await this.settledProc(req.id, req.execId);
    if (proc.exit) throw new NotFoundError(`process ${req.execId || req.id} already finished`);
    if (req.execId) {
      if (proc.pid <= 0) throw new FailedPreconditionError(`exec ${req.execId} is not started`);
      await task.driver.killExec(task, proc, req.signal);
      return {};
    }
    await task.driver.kill(task, req.signal, req.all);
    // A task Create ran, signalled before its Start (as a created one may be): its exit, if
    // the signal ends it, is told, also by a shim restarted later; a Start may still confirm
    // it if not.
    await task.init.releaseBeforeStart();
    return {};
  }

  async exec(req: ExecProcessRequest, _ctx?: CallContext): Promise<Empty> {
    const task = this.task(req.id);
    if (!req.execId) throw new InvalidArgumentError("exec: exec_id is required");
    if (task.execs.has(req.execId)) throw new AlreadyExistsError(`exec ${req.execId} already exists in task ${req.id}`);
    if (task.init.exit) throw new FailedPreconditionError(`task ${req.id} is stopped`);
    if (!req.spec || req.spec.value.length === 0) throw new InvalidArgumentError("exec: a process spec is required");
    // The Start that follows runs `runc exec`, which joins the task's cgroups (cgroup-prime.ts).
    void this.primer.prime();
    const stateDir = processStateDir(this.cfg.root, this.cfg.group, req.id, req.execId);
    await this.removing.get(stateDir);
    // Synchronous: a few small metadata operations cost less than as many thread-pool round trips.
    rmSync(stateDir, { recursive: true, force: true });
    mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    writeFileSync(join(stateDir, "process.json"), req.spec.value, { mode: 0o600 });
    const proc = new Proc(execRecord(task, req), stateDir);
    // The dir is new and the record written once here: plain, not through a temp file and a
    // rename (saveRecord). A shim that dies mid-write leaves a record that does not parse, which
    // a restarted shim skips exactly as it skips an exec whose Exec never reached the disk: an
    // exec that was never started has no process to re-adopt. Start rewrites it atomically.
    writeFileSync(join(stateDir, "record.json"), JSON.stringify(proc.record), { mode: 0o600 });
    task.execs.set(req.execId, proc);
    this.events.publish(task, Topics.execAdded, [
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
    return { stats: await task.driver.stats(task) };
  }

  async connect(req: ConnectRequest): Promise<ConnectResponse> {
    const t = this.tasks.get(req.id);
    return { shimPid: process.pid, taskPid: t?.init.pid ?? 0, version: SHIM_VERSION };
  }

  async shutdown(_req: ShutdownRequest): Promise<Empty> {
    // Many tasks share this shim: containerd asks every task's shim to shut down after
    // its delete, and only the last one really ends it.
    if (this.tasks.size === 0) {
      // exec state dirs still being removed after their Delete go first
      void Promise.all(this.removing.values()).then(() => setImmediate(() => this.cfg.onEmpty()));
    }
    return {};
  }

  // ---- re-adoption ---------------------------------------------------------------------

  /** Rebuilds the model from the state dir after a (re)start of the serving shim (reattach.ts). */
  adopt(): Promise<number> {
    return reattachAll(this.cfg.root, this.cfg.group, this.tasks, this.launcher);
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
