// CRI containers: create, start, stop, remove, status, list, update, exec-sync, log reopen.
// Semantics follow containerd's CRI plugin: CreateContainer prepares the writable snapshot,
// the bundle and the OCI spec; StartContainer creates and starts the task in the pod's shim
// with stdio into the CRI log; an exited task is deleted from its shim and its exit recorded.
import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync } from "node:fs";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { constants as osConstants } from "node:os";
import { dirname, isAbsolute, join } from "node:path";
import {
  ContainerConfig,
  ContainerEventType,
  ContainerState,
  type Container,
  type ContainerFilter,
  type ContainerStatus,
  type LinuxContainerResources,
  PodSandboxConfig,
  type PodSandboxStatus,
  signalToJSON,
} from "../gen/cri/runtime/v1/api.js";
import type { ContainerRow } from "../metadata/containers.js";
import type { PodRow } from "../metadata/pods.js";
import { buildContainerSpec, podCgroupParent, probeHost, type Spec } from "../oci/index.js";
import { applyResources } from "../oci/resources.js";
import { mountAll, unmountAll } from "../snapshots/mount.js";
import { DeadlineExceededError, FailedPreconditionError, InvalidArgumentError, NotFoundError } from "../util/errors.js";
import { ContainerLogger, ExecCapture, containerIoPaths } from "./container-io.js";
import {
  CRI_NAMESPACE as NS,
  type CriContext,
  dateNs,
  KeyedLock,
  matchesLabels,
  nowNs,
  paths,
  runUndo,
  sleep,
} from "./context.js";
import { newId, resolveId } from "./ids.js";

/** ExecSync output kept per stream (kubelet's gRPC limit is 16 MiB per message). */
export const EXEC_OUTPUT_LIMIT = 16 * 1024 * 1024;
/** How long an exited process's output may take to drain before its streams are closed. */
const DRAIN_MS = 5000;

export interface PodView {
  row: PodRow;
  config: PodSandboxConfig;
}

export class ContainerService {
  /** Loggers of containers whose task exists, by container id. */
  private readonly loggers = new Map<string, ContainerLogger>();
  /** In-flight exit handling, so an exit is recorded once whoever notices it first. */
  private readonly exiting = new Map<string, Promise<void>>();
  /** Containers the shim reported an OOM for. */
  private readonly oom = new Set<string>();
  /** Start, stop and remove of one container never overlap. */
  private readonly lock = new KeyedLock();
  /** Pending retries of interrupted creates/removals that recovery could not finish at once. */
  private readonly recoveryRetries = new Set<NodeJS.Timeout>();

  constructor(
    private readonly ctx: CriContext,
    /** Pod lookup (for the sandbox's status in events). */
    private readonly podStatus: (sandboxId: string) => Promise<PodSandboxStatus | undefined>,
  ) {
    ctx.shims.onEvent((ev) => {
      if (ev.type === "oom") this.oom.add(ev.containerId);
      if (ev.type === "exit" && ev.execId === "" && this.ctx.containers.get(ev.containerId)) {
        void this.handleExit(ev.containerId).catch((err: unknown) =>
          this.ctx.log.warn({ err, container: ev.containerId }, "handling a container exit failed"),
        );
      }
    });
  }

  resolve(ref: string): ContainerRow {
    const id = resolveId(ref, "container", (p) => this.ctx.containers.idsWithPrefix(p));
    return this.ctx.containers.get(id)!;
  }

  private config(row: ContainerRow): ContainerConfig {
    return ContainerConfig.decode(row.config);
  }

  // ---- create --------------------------------------------------------------------------

  async create(pod: PodView, config: ContainerConfig): Promise<string> {
    const name = config.metadata?.name;
    if (!name) throw new InvalidArgumentError("container config must have metadata.name");
    if (!config.image?.image) throw new InvalidArgumentError("container config must name an image");
    if (pod.row.phase !== "ready") {
      throw new FailedPreconditionError(
        `pod sandbox ${pod.row.id} is not ready (${pod.row.phase}): cannot create containers in it`,
      );
    }
    const imageRef = config.image.image;
    const imageId = this.ctx.images.resolveId(imageRef);
    const image = imageId ? await this.ctx.images.status(imageId) : undefined;
    if (!imageId || !image) throw new NotFoundError(`image ${JSON.stringify(imageRef)} not found; pull it first`);

    const id = newId();
    const bundle = paths.bundle(this.ctx, id);
    const rootfs = join(bundle, "rootfs");
    const logPath = pod.config.logDirectory && config.logPath ? join(pod.config.logDirectory, config.logPath) : "";
    if (logPath && !isAbsolute(logPath))
      throw new InvalidArgumentError(`log path ${logPath} must be absolute (set the pod's log_directory)`);
    const stopSignal = signalName(
      config.stopSignal ? signalToJSON(config.stopSignal) : image.config.StopSignal || "SIGTERM",
    );
    this.ctx.containers.insert({
      id,
      sandboxId: pod.row.id,
      name,
      attempt: config.metadata?.attempt ?? 0,
      config: Buffer.from(ContainerConfig.encode(config).finish()),
      imageRef,
      imageId,
      logPath,
      stopSignal,
      phase: "creating",
      createdAt: nowNs(),
      startedAt: 0n,
      exit: undefined,
    });
    const undo: (() => unknown)[] = [() => this.ctx.containers.delete(id)];
    try {
      await mkdir(rootfs, { recursive: true, mode: 0o711 });
      undo.push(() => rm(bundle, { recursive: true, force: true }));
      const mounts = await this.ctx.images.prepareRootfs(imageId, id, { labels: { "berth.io/container": id } });
      undo.push(() => this.ctx.images.removeRootfs(id));
      // berthd mounts the rootfs itself (rather than handing the mounts to the shim) so the
      // spec can be built from the image's /etc/passwd and /etc/group, and so every shim
      // (berth's or containerd's) finds the same ready bundle.
      mountAll(mounts, rootfs);
      undo.push(() => unmountAll(rootfs));
      if (logPath) await mkdir(dirname(logPath), { recursive: true, mode: 0o755 });

      const sandboxPid = await this.sandboxPid(pod.row.id);
      const spec = buildContainerSpec({
        id,
        sandboxId: pod.row.id,
        container: config,
        sandbox: pod.config,
        image: { name: imageRef, config: image.config },
        rootfsPath: rootfs,
        podPaths: {
          ...podFilesOf(pod.row.podDir),
          netnsPath: pod.row.netnsPath || null,
          ipcPath: `/proc/${sandboxPid}/ns/ipc`,
          utsPath: `/proc/${sandboxPid}/ns/uts`,
          pidNamespacePath: `/proc/${sandboxPid}/ns/pid`,
          targetPidNamespacePath: await this.targetPidNamespace(config, pod.row.id),
        },
        // Nested in the pod's cgroup (berth's own /berth/<podId> when kubelet gave no parent).
        cgroupParent: podCgroupParent(pod.config.linux?.cgroupParent, pod.row.id, this.ctx.cgroupDriver),
        cgroupDriver: this.ctx.cgroupDriver,
        runtimeHandler: pod.row.runtimeHandler,
      });
      await writeFile(join(bundle, "config.json"), JSON.stringify(spec));
      this.ctx.containers.setPhase(id, "created");
    } catch (err) {
      await runUndo(undo, this.ctx.log, `create of container ${id}`);
      throw err;
    }
    await this.publish(id, ContainerEventType.CONTAINER_CREATED_EVENT);
    return id;
  }

  /** For PID namespace mode TARGET: the running target container's PID namespace (same pod only). */
  private async targetPidNamespace(config: ContainerConfig, sandboxId: string): Promise<string | undefined> {
    const ns = config.linux?.securityContext?.namespaceOptions;
    if (ns?.pid !== 3 || !ns.targetId) return undefined;
    const target = this.resolve(ns.targetId);
    if (target.sandboxId !== sandboxId)
      throw new InvalidArgumentError(`PID namespace target ${target.id} is not in pod ${sandboxId}`);
    const s = this.hasTask(target.id) ? await this.ctx.shims.state(NS, target.id).catch(() => undefined) : undefined;
    if (!s || s.status !== "running")
      throw new FailedPreconditionError(`PID namespace target container ${target.id} is not running`);
    return `/proc/${s.pid}/ns/pid`;
  }

  private async sandboxPid(sandboxId: string): Promise<number> {
    try {
      const s = await this.ctx.shims.state(NS, sandboxId);
      if (s.status === "running" && s.pid > 0) return s.pid;
    } catch {
      // fall through
    }
    throw new FailedPreconditionError(`the sandbox process of pod ${sandboxId} is not running`);
  }

  // ---- start ---------------------------------------------------------------------------

  async start(ref: string, pod: PodView): Promise<void> {
    const id = this.resolve(ref).id;
    return this.lock.run(id, () => this.startLocked(id, pod));
  }

  private async startLocked(id: string, pod: PodView): Promise<void> {
    const row = this.ctx.containers.get(id);
    if (!row) throw new NotFoundError(`container ${id} not found`);
    if (row.phase !== "created" || row.startedAt !== 0n || row.exit || this.hasTask(row.id)) {
      throw new FailedPreconditionError(`container ${row.id} is not in the created state: it was started before`);
    }
    if (pod.row.phase !== "ready") throw new FailedPreconditionError(`pod sandbox ${pod.row.id} is not ready`);
    const config = this.config(row);
    const io = containerIoPaths(paths.ioRoot(this.ctx), row.id);
    const logger = new ContainerLogger(io, row.logPath, {
      hold: true,
      maxLineSize: this.ctx.maxLogLineSize,
      stdin: config.stdin,
    });
    let created = false;
    try {
      await this.ctx.shims.createTask({
        namespace: NS,
        id: row.id,
        bundle: paths.bundle(this.ctx, row.id),
        stdin: config.stdin ? io.stdin : "",
        stdout: io.stdout,
        stderr: config.tty ? "" : io.stderr,
        terminal: config.tty,
        handler: pod.row.runtimeHandler,
        sandboxId: pod.row.id,
      });
      created = true;
      logger.release();
      this.loggers.set(row.id, logger);
      // Taken before Start so that a process that exits at once never finishes before it started.
      const startedAt = nowNs();
      await this.ctx.shims.start(NS, row.id);
      this.ctx.containers.setStarted(row.id, startedAt);
    } catch (err) {
      this.loggers.delete(row.id);
      if (created) {
        await this.ctx.shims.kill(NS, row.id, 9).catch(() => {});
        await this.ctx.shims.delete(NS, row.id).catch(() => {});
      }
      logger.close();
      // containerd records a failed start as an exit with code 128 and reason StartError.
      this.ctx.containers.setExit(row.id, {
        exitCode: 128,
        finishedAt: nowNs(),
        reason: "StartError",
        message: (err as Error).message,
      });
      throw err;
    }
    await this.publish(row.id, ContainerEventType.CONTAINER_STARTED_EVENT);
  }

  /** The live IO of a container whose task exists (its output tee and stdin), for attach. */
  liveIo(id: string): ContainerLogger | undefined {
    return this.loggers.get(id);
  }

  private hasTask(id: string): boolean {
    return this.ctx.shims.list().some((r) => r.namespace === NS && r.id === id);
  }

  // ---- exit ----------------------------------------------------------------------------

  /** Records a container's exit and deletes its task; shared by whoever notices the exit first. */
  handleExit(id: string): Promise<void> {
    let p = this.exiting.get(id);
    if (!p) {
      p = this.finishExit(id).finally(() => this.exiting.delete(id));
      this.exiting.set(id, p);
    }
    return p;
  }

  private async finishExit(id: string): Promise<void> {
    const row = this.ctx.containers.get(id);
    if (!row || row.exit || !this.hasTask(id)) return;
    const state = await this.ctx.shims.state(NS, id).catch(() => undefined);
    if (state && state.status !== "stopped") return; // not exited after all
    const oomKilled = this.oom.has(id) || (await cgroupOomKilled(paths.bundle(this.ctx, id)));
    const logger = this.loggers.get(id);
    if (logger) {
      await Promise.race([logger.done, sleep(DRAIN_MS)]);
      logger.close();
      this.loggers.delete(id);
    }
    let exitCode = state?.exitStatus ?? 255;
    let exitedAt = state?.exitedAt;
    let message = state?.reason ?? "";
    try {
      const r = await this.ctx.shims.delete(NS, id);
      if (!state) {
        exitCode = r.exitStatus;
        exitedAt = r.exitedAt;
        message = r.reason ?? "";
      }
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
    }
    const reason = oomKilled ? "OOMKilled" : exitCode === 0 ? "Completed" : "Error";
    this.ctx.containers.setExit(id, { exitCode, finishedAt: dateNs(exitedAt) || nowNs(), reason, message });
    this.oom.delete(id);
    await this.publish(id, ContainerEventType.CONTAINER_STOPPED_EVENT);
  }

  // ---- stop / remove -------------------------------------------------------------------

  /** Sends the stop signal, then SIGKILL after `timeoutS` seconds; returns once the exit is recorded. Idempotent. */
  async stop(ref: string, timeoutS: number): Promise<void> {
    const id = this.resolve(ref).id;
    await this.lock.run(id, async () => {
      const row = this.ctx.containers.get(id);
      if (row) await this.stopRow(row, timeoutS);
    });
  }

  async stopRow(row: ContainerRow, timeoutS: number): Promise<void> {
    if (row.exit || !this.hasTask(row.id)) return;
    const id = row.id;
    const state = await this.ctx.shims.state(NS, id).catch(() => undefined);
    if (state && state.status !== "stopped" && timeoutS > 0) {
      const sig = signalNumber(row.stopSignal);
      await this.ctx.shims
        .kill(NS, id, sig)
        .catch((err: unknown) => this.ctx.log.debug({ err, container: id }, "stop signal"));
      const exited = await this.waitExit(id, timeoutS * 1000);
      if (exited) return this.handleExit(id);
    }
    if (state?.status !== "stopped") {
      await this.ctx.shims
        .kill(NS, id, 9, { all: true })
        .catch((err: unknown) => this.ctx.log.debug({ err, container: id }, "SIGKILL"));
      await this.waitExit(id, 30_000);
    }
    await this.handleExit(id);
  }

  /** Waits for the task's init process to exit; false on timeout. */
  private async waitExit(id: string, ms: number): Promise<boolean> {
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), ms);
    try {
      await this.ctx.shims.wait(NS, id, "", { signal: ac.signal });
      return true;
    } catch (err) {
      if (err instanceof NotFoundError) return true;
      return false;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Removes a container (stopping it first); OK when it does not exist. The log file stays, as in containerd. */
  async remove(ref: string): Promise<void> {
    let row: ContainerRow;
    try {
      row = this.resolve(ref);
    } catch (err) {
      if (err instanceof NotFoundError) return;
      throw err;
    }
    await this.lock.run(row.id, async () => {
      const current = this.ctx.containers.get(row.id);
      if (current) await this.removeRow(current);
    });
  }

  async removeRow(row: ContainerRow): Promise<void> {
    const id = row.id;
    this.ctx.containers.setPhase(id, "removing");
    await this.stopRow(row, 0);
    if (this.hasTask(id)) await this.ctx.shims.delete(NS, id).catch(() => {});
    this.loggers.get(id)?.close();
    this.loggers.delete(id);
    await this.cleanupFiles(id);
    this.ctx.containers.delete(id);
    await this.publish(id, ContainerEventType.CONTAINER_DELETED_EVENT, row);
  }

  /** Unmounts and removes what a container has on disk (idempotent). */
  async cleanupFiles(id: string): Promise<void> {
    const bundle = paths.bundle(this.ctx, id);
    unmountAll(join(bundle, "rootfs"));
    await this.ctx.images.removeRootfs(id);
    await rm(bundle, { recursive: true, force: true });
    await rm(containerIoPaths(paths.ioRoot(this.ctx), id).dir, { recursive: true, force: true });
  }

  // ---- status / list -------------------------------------------------------------------

  async status(ref: string, verbose: boolean): Promise<{ status: ContainerStatus; info: Record<string, string> }> {
    const row = this.resolve(ref);
    return this.statusOf(row, verbose);
  }

  private async liveState(row: ContainerRow): Promise<{
    state: ContainerState;
    pid: number;
    exitCode: number;
    finishedAt: bigint;
    reason: string;
    message: string;
  }> {
    if (row.exit) {
      return { state: ContainerState.CONTAINER_EXITED, pid: 0, ...row.exit };
    }
    if (!this.hasTask(row.id)) {
      return { state: ContainerState.CONTAINER_CREATED, pid: 0, exitCode: 0, finishedAt: 0n, reason: "", message: "" };
    }
    try {
      const s = await this.ctx.shims.state(NS, row.id);
      switch (s.status) {
        case "running":
        case "paused":
        case "pausing":
          return {
            state: ContainerState.CONTAINER_RUNNING,
            pid: s.pid,
            exitCode: 0,
            finishedAt: 0n,
            reason: "",
            message: "",
          };
        case "created":
          return {
            state: ContainerState.CONTAINER_CREATED,
            pid: s.pid,
            exitCode: 0,
            finishedAt: 0n,
            reason: "",
            message: "",
          };
        case "stopped": {
          // Exited, and the exit is being recorded right now.
          const reason = this.oom.has(row.id) ? "OOMKilled" : s.exitStatus === 0 ? "Completed" : "Error";
          return {
            state: ContainerState.CONTAINER_EXITED,
            pid: 0,
            exitCode: s.exitStatus,
            finishedAt: dateNs(s.exitedAt),
            reason,
            message: s.reason ?? "",
          };
        }
        default:
          return {
            state: ContainerState.CONTAINER_UNKNOWN,
            pid: 0,
            exitCode: 0,
            finishedAt: 0n,
            reason: "Unknown",
            message: "",
          };
      }
    } catch (err) {
      return {
        state: ContainerState.CONTAINER_UNKNOWN,
        pid: 0,
        exitCode: 0,
        finishedAt: 0n,
        reason: "Unknown",
        message: (err as Error).message,
      };
    }
  }

  async statusOf(
    row: ContainerRow,
    verbose: boolean,
  ): Promise<{ status: ContainerStatus; info: Record<string, string> }> {
    const config = this.config(row);
    const live = await this.liveState(row);
    const status: ContainerStatus = {
      id: row.id,
      metadata: config.metadata,
      state: live.state,
      createdAt: row.createdAt,
      startedAt: row.startedAt,
      finishedAt: live.finishedAt,
      exitCode: live.exitCode,
      image: {
        image: row.imageRef,
        annotations: config.image?.annotations ?? {},
        userSpecifiedImage: config.image?.userSpecifiedImage ?? "",
        runtimeHandler: "",
        imageRef: row.imageId,
      },
      imageRef: await this.imageRefOf(row),
      reason: live.reason,
      message: live.message,
      labels: config.labels,
      annotations: config.annotations,
      mounts: config.mounts,
      logPath: row.logPath,
      resources: { linux: config.linux?.resources, windows: undefined },
      imageId: row.imageId,
      user: undefined,
      stopSignal: 0,
    };
    const info: Record<string, string> = {};
    if (verbose) {
      let spec: unknown;
      try {
        spec = JSON.parse(readFileSync(join(paths.bundle(this.ctx, row.id), "config.json"), "utf8"));
      } catch {
        spec = undefined;
      }
      info.info = JSON.stringify({
        sandboxID: row.sandboxId,
        pid: live.pid,
        removing: row.phase === "removing",
        snapshotKey: row.id,
        snapshotter: this.ctx.images.snapshotter.name,
        runtimeType: this.ctx.shims.list().find((r) => r.id === row.id)?.runtimeType ?? "",
        config: ContainerConfig.toJSON(config),
        runtimeSpec: spec,
      });
    }
    return { status, info };
  }

  /** image_ref: the repo digest when the image has one (what kubelet shows), else the id. */
  private async imageRefOf(row: ContainerRow): Promise<string> {
    const img = await this.ctx.images.status(row.imageId).catch(() => undefined);
    return img?.repoDigests[0] ?? row.imageId;
  }

  async list(filter: ContainerFilter | undefined): Promise<Container[]> {
    let rows = this.ctx.containers.list().filter((r) => r.phase !== "creating");
    if (filter?.id) rows = rows.filter((r) => r.id.startsWith(filter.id));
    if (filter?.podSandboxId) rows = rows.filter((r) => r.sandboxId.startsWith(filter.podSandboxId));
    const out: Container[] = [];
    for (const row of rows) {
      const config = this.config(row);
      if (!matchesLabels(config.labels, filter?.labelSelector)) continue;
      const { state } = await this.liveState(row);
      if (filter?.state && filter.state.state !== state) continue;
      out.push({
        id: row.id,
        podSandboxId: row.sandboxId,
        metadata: config.metadata,
        image: {
          image: row.imageRef,
          annotations: {},
          userSpecifiedImage: "",
          runtimeHandler: "",
          imageRef: row.imageId,
        },
        imageRef: await this.imageRefOf(row),
        state,
        createdAt: row.createdAt,
        labels: config.labels,
        annotations: config.annotations,
        imageId: row.imageId,
      });
    }
    return out;
  }

  // ---- update / exec / logs ------------------------------------------------------------

  async updateResources(
    ref: string,
    resources: LinuxContainerResources | undefined,
    annotations: Record<string, string>,
  ): Promise<void> {
    const row = this.resolve(ref);
    if (row.exit) throw new FailedPreconditionError(`container ${row.id} has exited: its resources cannot change`);
    const specPath = join(paths.bundle(this.ctx, row.id), "config.json");
    const spec = JSON.parse(await readFile(specPath, "utf8")) as Spec;
    const out = { ...(spec.linux.resources ?? {}) };
    applyResources(out, resources, probeHost());
    spec.linux.resources = out;
    if (this.hasTask(row.id)) await this.ctx.shims.update(NS, row.id, out, annotations);
    // Kept in the spec too, so a later read (status, a restart of berthd) sees the new values.
    await writeFile(specPath, JSON.stringify(spec));
    const config = this.config(row);
    if (resources && config.linux) {
      config.linux.resources = resources;
    }
  }

  async execSync(
    ref: string,
    cmd: string[],
    timeoutS: number,
    signal: AbortSignal,
  ): Promise<{ stdout: Buffer; stderr: Buffer; exitCode: number }> {
    const row = this.resolve(ref);
    if (cmd.length === 0) throw new InvalidArgumentError("exec needs a command");
    const live = await this.liveState(row);
    if (live.state !== ContainerState.CONTAINER_RUNNING)
      throw new FailedPreconditionError(`container ${row.id} is not running`);
    const spec = JSON.parse(await readFile(join(paths.bundle(this.ctx, row.id), "config.json"), "utf8")) as Spec;
    const processSpec = { ...spec.process, args: cmd, terminal: false };
    const execId = randomBytes(8).toString("hex");
    const io = containerIoPaths(paths.ioRoot(this.ctx), row.id);
    mkdirSync(io.dir, { recursive: true, mode: 0o700 });
    const cap = new ExecCapture(io.dir, execId, EXEC_OUTPUT_LIMIT);
    let added = false;
    try {
      await this.ctx.shims.exec(NS, row.id, execId, {
        spec: processSpec,
        stdout: cap.path("stdout"),
        stderr: cap.path("stderr"),
      });
      added = true;
      await this.ctx.shims.start(NS, row.id, execId);
      // The shim opens the exec's fifos by the time the process has started.
      cap.release();
      const ac = new AbortController();
      const onAbort = () => ac.abort();
      signal.addEventListener("abort", onAbort, { once: true });
      const timer = timeoutS > 0 ? setTimeout(() => ac.abort(), timeoutS * 1000) : undefined;
      let exitCode: number;
      let timedOut = false;
      try {
        exitCode = (await this.ctx.shims.wait(NS, row.id, execId, { signal: ac.signal })).exitStatus;
      } catch (err) {
        if (!ac.signal.aborted) throw err;
        // Timed out (or the caller went away): kill the exec process and report in time.
        timedOut = true;
        exitCode = -1;
        await this.ctx.shims.kill(NS, row.id, 9, { execId }).catch(() => {});
      } finally {
        clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
      }
      if (timedOut) {
        // Collect the process in the background; the caller gets its answer now.
        void this.ctx.shims
          .wait(NS, row.id, execId)
          .then(() => this.ctx.shims.deleteProcess(NS, row.id, execId))
          .catch(() => {})
          .finally(() => void cap.close());
        added = false;
        throw new DeadlineExceededError(`command ${JSON.stringify(cmd)} timed out after ${timeoutS}s`);
      }
      await Promise.race([cap.done, sleep(2000)]);
      return { stdout: Buffer.concat(cap.stdout), stderr: Buffer.concat(cap.stderr), exitCode };
    } finally {
      if (added) {
        await this.ctx.shims.deleteProcess(NS, row.id, execId).catch(() => {});
        await cap.close();
      } else if (!added) {
        // exec never added, or handed to the background cleanup above
      }
    }
  }

  async reopenLog(ref: string): Promise<void> {
    const row = this.resolve(ref);
    const logger = this.loggers.get(row.id);
    const live = await this.liveState(row);
    if (!logger || live.state !== ContainerState.CONTAINER_RUNNING) {
      throw new FailedPreconditionError(`container ${row.id} is not running: its log cannot be reopened`);
    }
    logger.reopen();
  }

  // ---- recovery ------------------------------------------------------------------------

  /** After a restart: reattaches the log pumps of live tasks, records exits, finishes or rolls back interrupted work. */
  async recover(): Promise<void> {
    for (const row of this.ctx.containers.list()) {
      try {
        if (row.phase === "creating" || row.phase === "removing") {
          await this.finishInterrupted(row.id, 0);
          continue;
        }
        if (!this.hasTask(row.id)) continue;
        const s = await this.ctx.shims.state(NS, row.id).catch(() => undefined);
        if (s && s.status !== "stopped") {
          const io = containerIoPaths(paths.ioRoot(this.ctx), row.id);
          this.loggers.set(
            row.id,
            new ContainerLogger(io, row.logPath, { hold: false, maxLineSize: this.ctx.maxLogLineSize }),
          );
        } else {
          await this.handleExit(row.id);
        }
      } catch (err) {
        this.ctx.log.warn({ err, container: row.id }, "recovering a container failed");
      }
    }
  }

  /**
   * Finishes an interrupted RemoveContainer, or rolls back an interrupted CreateContainer:
   * the task killed and deleted, the rootfs and files removed, then the row. Every step is
   * idempotent (NotFound means already done), so an attempt that fails is tried again later
   * (backing off, under the container's lock, until the row is gone) instead of leaving the
   * row behind for good.
   */
  private async finishInterrupted(id: string, attempt: number): Promise<void> {
    await this.lock.run(id, async () => {
      const row = this.ctx.containers.get(id);
      if (!row || (row.phase !== "creating" && row.phase !== "removing")) return;
      try {
        if (this.hasTask(id)) {
          await this.ctx.shims.kill(NS, id, 9, { all: true }).catch(() => {});
          await this.waitExit(id, 10_000);
          // The kill's TaskExit event starts handleExit, which deletes the task too: share it
          // (as removeRow does through stopRow), so that one Delete at a time reaches the shim.
          await this.handleExit(id).catch(() => {});
          if (this.hasTask(id)) {
            await this.ctx.shims.delete(NS, id).catch((err: unknown) => {
              if (!(err instanceof NotFoundError)) throw err;
            });
          }
        }
        // An exit handler that began before our delete may still be in its own: with
        // containerd-shim-runc-v2 that runs runc (and the shim's `delete` command) in the
        // bundle, which writes <bundle>/log.json, racing the bundle's removal (ENOTEMPTY).
        await this.exiting.get(id)?.catch(() => {});
        await this.cleanupFiles(id);
        this.ctx.containers.delete(id);
        this.ctx.log.info(
          { container: id, phase: row.phase },
          row.phase === "creating"
            ? "rolled back an interrupted container create"
            : "finished an interrupted container removal",
        );
      } catch (err) {
        const delayMs = Math.min(60_000, 1000 * 2 ** attempt);
        this.ctx.log.warn(
          { err, container: id, phase: row.phase, retryInMs: delayMs },
          "finishing an interrupted container create/remove failed; trying again later",
        );
        const timer = setTimeout(() => {
          this.recoveryRetries.delete(timer);
          this.finishInterrupted(id, attempt + 1).catch((e: unknown) =>
            this.ctx.log.warn({ err: e, container: id }, "retrying an interrupted container create/remove failed"),
          );
        }, delayMs);
        timer.unref();
        this.recoveryRetries.add(timer);
      }
    });
  }

  /** Closes log pumps (berthd stopping; the containers keep running). */
  close(): void {
    for (const t of this.recoveryRetries) clearTimeout(t);
    this.recoveryRetries.clear();
    for (const l of this.loggers.values()) l.close();
    this.loggers.clear();
  }

  // ---- events --------------------------------------------------------------------------

  private async publish(id: string, type: ContainerEventType, removed?: ContainerRow): Promise<void> {
    try {
      const row = removed ?? this.ctx.containers.get(id);
      if (!row) return;
      const statuses = removed ? [] : [(await this.statusOf(row, false)).status];
      this.ctx.events.publish({
        containerId: id,
        containerEventType: type,
        createdAt: nowNs(),
        podSandboxStatus: await this.podStatus(row.sandboxId),
        containersStatuses: statuses,
      });
    } catch (err) {
      this.ctx.log.debug({ err }, "publishing a container event failed");
    }
  }
}

function podFilesOf(podDir: string) {
  return {
    hostname: join(podDir, "hostname"),
    hosts: join(podDir, "hosts"),
    resolvConf: join(podDir, "resolv.conf"),
    shm: join(podDir, "shm"),
  };
}

/** CRI Signal enum value -> name (the enum's names are the signal names). */
function stopSignalOf(sig: number): string {
  const names = Object.entries(osConstants.signals).find(([, n]) => n === sig);
  return names ? names[0] : "SIGTERM";
}

/** "SIGTERM", "TERM" or "15" -> "SIGTERM". */
function signalName(s: string): string {
  const t = s.trim().toUpperCase();
  if (/^\d+$/.test(t)) return stopSignalOf(Number(t));
  const name = t.startsWith("SIG") ? t : `SIG${t}`;
  if (!(name in osConstants.signals)) throw new InvalidArgumentError(`unknown stop signal ${JSON.stringify(s)}`);
  return name;
}

function signalNumber(name: string): number {
  return (osConstants.signals as Record<string, number>)[name] ?? 15;
}

/** Whether the kernel OOM-killed in the container's memory cgroup (v1 memory.oom_control). */
async function cgroupOomKilled(bundle: string): Promise<boolean> {
  try {
    const spec = JSON.parse(await readFile(join(bundle, "config.json"), "utf8")) as Spec;
    const cg = spec.linux.cgroupsPath;
    if (!cg || cg.includes(":")) return false;
    const text = await readFile(join("/sys/fs/cgroup/memory", cg, "memory.oom_control"), "utf8");
    const m = /oom_kill (\d+)/.exec(text);
    return m ? Number(m[1]) > 0 : false;
  } catch {
    return false;
  }
}
