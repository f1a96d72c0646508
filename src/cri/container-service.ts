// CRI containers: create, start, stop, remove, status, list, update, exec-sync, log reopen.
// Semantics follow containerd's CRI plugin: CreateContainer prepares the writable snapshot,
// the bundle and the OCI spec; StartContainer creates and starts the task in the pod's shim
// with stdio into the CRI log; an exited task is deleted from its shim and its exit recorded.
//
// State (created / running / exited, exit code and reason) is kept, as containerd keeps it,
// from what berthd itself does and from the exit events the shim manager delivers (a shim's
// TaskExit, or the manager's own for a shim that died), so ListContainers and ContainerStatus,
// which kubelet polls every second, answer without a shim round trip. What must survive a
// restart is in the metadata row (start time, final exit); recover() asks every shim once.
import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync } from "node:fs";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
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
} from "../gen/cri/runtime/v1/api.js";
import type { ContainerExit, ContainerRow } from "../metadata/containers.js";
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
import { imageVolumeStatus, prepareImageVolumes, removeImageVolumes } from "./image-volumes.js";
import { RetryScheduler, backoffMs } from "./retry.js";
import { injectCdiDevices, requestedCdiDevices } from "./cdi/inject.js";
import { DEFAULT_CDI_SPEC_DIRS } from "./cdi/registry.js";
import { withResources } from "./pod-resources.js";
import { effectiveStopSignal, storedSignalNumber, storedSignalToCri } from "./stop-signal.js";

/** containerd's exit code and reason for a container whose task vanished without a known exit. */
export const UNKNOWN_EXIT_CODE = 255;
export const UNKNOWN_REASON = "Unknown";

interface LiveState {
  state: ContainerState;
  exitCode: number;
  finishedAt: bigint;
  reason: string;
  message: string;
}

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
  /** The process identity each container runs with (from its OCI spec; fixed at create). */
  private readonly users = new Map<string, Promise<ContainerStatus["user"]>>();
  /**
   * Exits seen (from the exit event, or found by the exit handling) but not yet recorded in
   * the row: the row gets them once the task is deleted from its shim (finishExit).
   */
  private readonly exitsSeen = new Map<string, ContainerExit>();
  /** Exit events whose container's output is still draining into its log: not reported yet. */
  private readonly exitsHeard = new Map<string, ContainerExit>();
  /** Containers whose task's state recovery could not learn (its shim did not answer): UNKNOWN until it exits or is stopped. */
  private readonly unknown = new Set<string>();
  /** Decoded configs by container id (ListContainers would otherwise decode every row every second). */
  private readonly configs = new Map<string, ContainerConfig>();
  /** Start, stop and remove of one container never overlap. */
  private readonly lock = new KeyedLock();
  /** Pending retries of interrupted creates/removals that recovery could not finish at once. */
  private readonly recoveryRetries = new RetryScheduler();

  constructor(
    private readonly ctx: CriContext,
    /** Pod lookup (for the sandbox's status in events). */
    private readonly podStatus: (sandboxId: string) => Promise<PodSandboxStatus | undefined>,
  ) {
    ctx.shims.onEvent((ev) => {
      if (ev.namespace !== NS) return;
      if (ev.type === "oom") this.oom.add(ev.containerId);
      if (ev.type !== "exit" || ev.execId !== "") return;
      const row = this.ctx.containers.get(ev.containerId);
      if (!row) return;
      this.noteExit(row, ev);
      void this.handleExit(ev.containerId).catch((err: unknown) =>
        this.ctx.log.warn({ err, container: ev.containerId }, "handling a container exit failed"),
      );
    });
  }

  /**
   * Takes note of an exit event. A container is reported EXITED only once its output is all in
   * its log (finishExit), as containerd does: kubelet reads a finished container's log as soon
   * as it sees it exited. Only an exit the manager reports for a dead shim shows at once, since
   * finishing it may never reach that shim.
   */
  private noteExit(row: ContainerRow, ev: { exitStatus: number; exitedAt?: Date; reason?: string }): void {
    if (row.exit || this.exitsSeen.has(row.id)) return;
    const exit = {
      exitCode: ev.exitStatus,
      finishedAt: dateNs(ev.exitedAt) || nowNs(),
      // ev.reason: the manager reports the exit because the shim is gone (containerd's "Unknown").
      reason: ev.reason ? UNKNOWN_REASON : "",
      message: ev.reason ?? "",
    };
    if (ev.reason) {
      this.exitsSeen.set(row.id, exit);
      this.unknown.delete(row.id);
    } else {
      this.exitsHeard.set(row.id, exit);
    }
  }

  resolve(ref: string): ContainerRow {
    const id = resolveId(ref, "container", (p) => this.ctx.containers.idsWithPrefix(p));
    return this.ctx.containers.get(id)!;
  }

  /** The container's CRI config, decoded once (it never changes but for UpdateContainerResources). */
  private config(row: ContainerRow): ContainerConfig {
    let c = this.configs.get(row.id);
    if (!c) {
      c = ContainerConfig.decode(row.config);
      this.configs.set(row.id, c);
    }
    return c;
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
    const stopSignal = effectiveStopSignal(config.stopSignal, image.config.StopSignal);
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

      const volumeMounts = await prepareImageVolumes(this.ctx, id, bundle, config.mounts, undo);

      const sandboxPid = await this.sandboxPid(pod.row.id);
      const spec = buildContainerSpec({
        id,
        sandboxId: pod.row.id,
        container: { ...config, mounts: volumeMounts },
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
      await injectCdiDevices(spec, requestedCdiDevices(config), this.ctx.cdiSpecDirs ?? DEFAULT_CDI_SPEC_DIRS);
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
    return this.ctx.shims.has(NS, id);
  }

  private exitReason(id: string, exitCode: number, cgroupOom: boolean): string {
    return this.oom.has(id) || cgroupOom ? "OOMKilled" : exitCode === 0 ? "Completed" : "Error";
  }

  /** Drops what is kept in memory of a container (its row is gone). */
  private forget(id: string): void {
    this.users.delete(id);
    this.configs.delete(id);
    this.exitsSeen.delete(id);
    this.exitsHeard.delete(id);
    this.unknown.delete(id);
    this.oom.delete(id);
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
    if (!row || row.exit) {
      this.exitsSeen.delete(id);
      this.exitsHeard.delete(id);
      return;
    }
    if (!this.hasTask(id)) return;
    const state = await this.ctx.shims.state(NS, id).catch(() => undefined);
    if (state && state.status !== "stopped") {
      // not exited after all (a stale event)
      this.exitsSeen.delete(id);
      this.exitsHeard.delete(id);
      return;
    }
    const seen = this.exitsSeen.get(id) ?? this.exitsHeard.get(id);
    // The manager sets a reason when it, not the shim, tells of the exit: the shim is gone.
    const unknownExit = seen ? seen.reason === UNKNOWN_REASON : state?.reason !== undefined;
    const oomKilled = this.oom.has(id) || (await cgroupOomKilled(paths.bundle(this.ctx, id)));
    const logger = this.loggers.get(id);
    if (logger) {
      await Promise.race([logger.done, sleep(DRAIN_MS)]);
      logger.close();
      this.loggers.delete(id);
    }
    // Its output is in: EXITED from now on, even if the delete below has to be retried.
    const code = state?.exitStatus ?? seen?.exitCode ?? 255;
    this.exitsSeen.set(id, {
      exitCode: code,
      finishedAt: dateNs(state?.exitedAt) || seen?.finishedAt || nowNs(),
      reason: unknownExit && !oomKilled ? UNKNOWN_REASON : this.exitReason(id, code, oomKilled),
      message: state?.reason ?? seen?.message ?? "",
    });
    this.exitsHeard.delete(id);
    this.unknown.delete(id);
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
    const reason = unknownExit && !oomKilled ? UNKNOWN_REASON : this.exitReason(id, exitCode, oomKilled);
    this.ctx.containers.setExit(id, { exitCode, finishedAt: dateNs(exitedAt) || nowNs(), reason, message });
    this.exitsSeen.delete(id);
    this.oom.delete(id);
    await this.publish(id, ContainerEventType.CONTAINER_STOPPED_EVENT);
  }

  // ---- stop / remove -------------------------------------------------------------------

  /** Sends the stop signal, then SIGKILL after `timeoutS` seconds; returns once the exit is recorded. Idempotent. */
  async stop(ref: string, timeoutS: number): Promise<void> {
    let id: string;
    try {
      id = this.resolve(ref).id;
    } catch (err) {
      // Idempotent (CRI): a container already removed has nothing left to stop, as containerd.
      if (err instanceof NotFoundError) return;
      throw err;
    }
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
      const sig = storedSignalNumber(row.stopSignal);
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
    this.forget(id);
    await this.publish(id, ContainerEventType.CONTAINER_DELETED_EVENT, row);
  }

  /** Unmounts and removes what a container has on disk (idempotent). */
  async cleanupFiles(id: string): Promise<void> {
    const bundle = paths.bundle(this.ctx, id);
    unmountAll(join(bundle, "rootfs"));
    await this.ctx.images.removeRootfs(id);
    await removeImageVolumes(this.ctx, id, bundle);
    await rm(bundle, { recursive: true, force: true });
    await rm(containerIoPaths(paths.ioRoot(this.ctx), id).dir, { recursive: true, force: true });
  }

  // ---- status / list -------------------------------------------------------------------

  async status(ref: string, verbose: boolean): Promise<{ status: ContainerStatus; info: Record<string, string> }> {
    const row = this.resolve(ref);
    return this.statusOf(row, verbose);
  }

  /**
   * The container's state as berthd keeps it (no shim round trip): the exit recorded in the
   * row, or one seen and being recorded; else running once started, created before.
   */
  private liveState(row: ContainerRow): LiveState {
    if (row.exit) return { state: ContainerState.CONTAINER_EXITED, ...row.exit };
    const seen = this.exitsSeen.get(row.id);
    if (seen) return { state: ContainerState.CONTAINER_EXITED, ...seen };
    if (this.unknown.has(row.id)) {
      return {
        state: ContainerState.CONTAINER_UNKNOWN,
        exitCode: 0,
        finishedAt: 0n,
        reason: UNKNOWN_REASON,
        message: "",
      };
    }
    if (row.startedAt > 0n) {
      if (this.hasTask(row.id)) {
        return { state: ContainerState.CONTAINER_RUNNING, exitCode: 0, finishedAt: 0n, reason: "", message: "" };
      }
      // Started, no task, no exit: cannot last (an exit is seen before the task is deleted,
      // recovery records one for a task gone meanwhile), but never claim RUNNING for it.
      const heard = this.exitsHeard.get(row.id);
      if (heard) return { state: ContainerState.CONTAINER_EXITED, ...heard, reason: heard.reason || "Error" };
      return {
        state: ContainerState.CONTAINER_EXITED,
        exitCode: UNKNOWN_EXIT_CODE,
        finishedAt: 0n,
        reason: UNKNOWN_REASON,
        message: "the container's task is gone",
      };
    }
    return { state: ContainerState.CONTAINER_CREATED, exitCode: 0, finishedAt: 0n, reason: "", message: "" };
  }

  /**
   * ContainerStatus.user: the uid, gid and supplementary groups the container's process really
   * got (image /etc/passwd and /etc/group, RunAsUser/RunAsGroup, the supplemental groups
   * policy), as kubelet reports them. Read once from the bundle's spec.
   */
  private userOf(id: string): Promise<ContainerStatus["user"]> {
    let u = this.users.get(id);
    if (!u) {
      u = readFile(join(paths.bundle(this.ctx, id), "config.json"), "utf8").then(
        (text) => {
          const user = (JSON.parse(text) as Spec).process.user;
          // As kubelet shows them (KEP-3619): every group the process has, the primary one included.
          const groups = [...new Set([user.gid, ...(user.additionalGids ?? [])])].sort((a, b) => a - b);
          return { linux: { uid: BigInt(user.uid), gid: BigInt(user.gid), supplementalGroups: groups.map(BigInt) } };
        },
        () => undefined, // no bundle (yet, or any more)
      );
      this.users.set(id, u);
      void u.then((v) => {
        if (!v) this.users.delete(id); // try again next time
      });
    }
    return u;
  }

  /** `imageRefs` memoises image_ref by image id across the rows of one call (a pod's status, a list). */
  async statusOf(
    row: ContainerRow,
    verbose: boolean,
    imageRefs = new Map<string, Promise<string>>(),
  ): Promise<{ status: ContainerStatus; info: Record<string, string> }> {
    const config = this.config(row);
    const live = this.liveState(row);
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
      imageRef: await this.imageRefOf(row, imageRefs),
      reason: live.reason,
      message: live.message,
      labels: config.labels,
      annotations: config.annotations,
      mounts: imageVolumeStatus(this.ctx, config.mounts),
      logPath: row.logPath,
      resources: { linux: config.linux?.resources, windows: undefined },
      imageId: row.imageId,
      user: await this.userOf(row.id),
      stopSignal: storedSignalToCri(row.stopSignal),
    };
    const info: Record<string, string> = {};
    if (verbose) {
      let spec: unknown;
      try {
        spec = JSON.parse(readFileSync(join(paths.bundle(this.ctx, row.id), "config.json"), "utf8"));
      } catch {
        spec = undefined;
      }
      // Verbose status is for people and debugging, not polled: it asks the shim for the pid.
      const pid =
        live.state === ContainerState.CONTAINER_RUNNING
          ? ((await this.ctx.shims.state(NS, row.id).catch(() => undefined))?.pid ?? 0)
          : 0;
      info.info = JSON.stringify({
        sandboxID: row.sandboxId,
        pid,
        removing: row.phase === "removing",
        snapshotKey: row.id,
        snapshotter: this.ctx.images.snapshotter.name,
        runtimeType: this.ctx.shims.record(NS, row.id)?.runtimeType ?? "",
        config: ContainerConfig.toJSON(config),
        runtimeSpec: spec,
      });
    }
    return { status, info };
  }

  /** image_ref: the repo digest when the image has one (what kubelet shows), else the id. */
  private imageRefOf(row: ContainerRow, memo: Map<string, Promise<string>>): Promise<string> {
    let ref = memo.get(row.imageId);
    if (!ref) {
      ref = this.ctx.images
        .status(row.imageId)
        .catch(() => undefined)
        .then((img) => img?.repoDigests[0] ?? row.imageId);
      memo.set(row.imageId, ref);
    }
    return ref;
  }

  async list(filter: ContainerFilter | undefined): Promise<Container[]> {
    let rows = this.ctx.containers.list().filter((r) => r.phase !== "creating");
    if (filter?.id) rows = rows.filter((r) => r.id.startsWith(filter.id));
    if (filter?.podSandboxId) rows = rows.filter((r) => r.sandboxId.startsWith(filter.podSandboxId));
    const out: Container[] = [];
    for (const row of rows) {
      const config = this.config(row);
      if (!matchesLabels(config.labels, filter?.labelSelector)) continue;
      const { state } = this.liveState(row);
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
        // The image id, as containerd lists it: kubelets before 1.30 (no image_id) take a listed
        // container's image_ref as its image ID, which image GC matches against image ids to
        // keep images in use; a repo digest here would let GC remove a running container's
        // image. ContainerStatus carries the repo digest.
        imageRef: row.imageId,
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
    // Persisted, so ContainerStatus.resources reports the new values after a restart too.
    if (resources) {
      const next = withResources(this.config(row), resources);
      this.ctx.containers.setConfig(row.id, Buffer.from(ContainerConfig.encode(next).finish()));
      this.configs.set(row.id, next);
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
    const live = this.liveState(row);
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
    const live = this.liveState(row);
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
        if (row.exit) {
          // Exit recorded, task not yet deleted (a crash in between): finish that.
          if (this.hasTask(row.id)) {
            await this.ctx.shims.kill(NS, row.id, 9, { all: true }).catch(() => {});
            await this.ctx.shims.delete(NS, row.id).catch(() => {});
          }
          continue;
        }
        if (!this.hasTask(row.id)) {
          // Started, and its task vanished while berthd was down: as containerd does, exited
          // with an unknown exit code and reason (never RUNNING without a task).
          if (row.startedAt > 0n) {
            this.ctx.containers.setExit(row.id, {
              exitCode: UNKNOWN_EXIT_CODE,
              finishedAt: nowNs(),
              reason: UNKNOWN_REASON,
              message: "its task was gone when berthd restarted",
            });
          }
          continue;
        }
        // The one time the state kept in berthd is refreshed from the shim.
        let s;
        try {
          s = await this.ctx.shims.state(NS, row.id);
        } catch (err) {
          if (!(err instanceof NotFoundError)) {
            this.unknown.add(row.id);
            this.ctx.log.warn({ err, container: row.id }, "the shim did not tell the container's state: UNKNOWN");
            continue;
          }
        }
        if (!s || s.status === "stopped") {
          await this.handleExit(row.id);
          continue;
        }
        if (row.startedAt === 0n) {
          if (s.status === "created") {
            // StartContainer was interrupted before Start: as containerd, the task goes and
            // the container stays CREATED (it can be started again).
            await this.ctx.shims.kill(NS, row.id, 9, { all: true }).catch(() => {});
            await this.ctx.shims.delete(NS, row.id).catch(() => {});
            continue;
          }
          // Started, but berthd stopped before it recorded the start time.
          this.ctx.containers.setStarted(row.id, nowNs());
        }
        const io = containerIoPaths(paths.ioRoot(this.ctx), row.id);
        this.loggers.set(
          row.id,
          new ContainerLogger(io, row.logPath, { hold: false, maxLineSize: this.ctx.maxLogLineSize }),
        );
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
        this.forget(id);
        this.ctx.log.info(
          { container: id, phase: row.phase },
          row.phase === "creating"
            ? "rolled back an interrupted container create"
            : "finished an interrupted container removal",
        );
      } catch (err) {
        this.ctx.log.warn(
          { err, container: id, phase: row.phase, retryInMs: backoffMs(attempt) },
          "finishing an interrupted container create/remove failed; trying again later",
        );
        this.recoveryRetries.schedule(attempt, () => {
          this.finishInterrupted(id, attempt + 1).catch((e: unknown) =>
            this.ctx.log.warn({ err: e, container: id }, "retrying an interrupted container create/remove failed"),
          );
        });
      }
    });
  }

  /** Closes log pumps (berthd stopping; the containers keep running). */
  close(): void {
    this.recoveryRetries.close();
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
