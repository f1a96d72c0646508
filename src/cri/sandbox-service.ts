// CRI pod sandboxes: run, stop, remove, status, list. A pod is a network namespace set up by
// CNI, a directory of shared files (hostname, hosts, resolv.conf, /dev/shm) and a sandbox
// process (berth's static pause) holding the pod's IPC/UTS/PID namespaces, started as a task
// in the pod's shim. Every step of RunPodSandbox is undone in reverse when a later one fails.
// When the sandbox process dies by itself the pod becomes NOTREADY for good, as in containerd:
// the exit is recorded, its task deleted and CONTAINER_STOPPED sent for the pod; its network
// and containers stay until kubelet calls StopPodSandbox. A pod kubelet gives no cgroup parent
// gets its own pod cgroup (/berth/<podId>), removed with the pod.
// Whether a pod is READY is kept in berthd from what it does and from the sandbox's exit
// event (as containerd does), so ListPodSandbox and PodSandboxStatus need no shim round trip;
// recover() asks each sandbox's shim once after a restart.
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import {
  ContainerEventType,
  NamespaceMode,
  PodSandboxConfig,
  PodSandboxState,
  Protocol,
  type PodSandbox,
  type PodSandboxFilter,
  type PodSandboxStatus,
} from "../gen/cri/runtime/v1/api.js";
import type { PodRow } from "../metadata/pods.js";
import type { PortMapping } from "../network/index.js";
import { buildSandboxSpec, podCgroupOwned, podCgroupParent, podNamespaceModes } from "../oci/index.js";
import { InvalidArgumentError, NotFoundError } from "../util/errors.js";
import {
  CRI_NAMESPACE as NS,
  type CriContext,
  dateNs,
  KeyedLock,
  matchesLabels,
  nowNs,
  paths,
  runUndo,
} from "./context.js";
import type { ContainerService, PodView } from "./container-service.js";
import { newId, resolveId } from "./ids.js";
import { RetryScheduler, backoffMs } from "./retry.js";
import { removePodCgroup } from "./pod-cgroup.js";
import { mountShm, podFiles, unmountShm, writePodFiles } from "./pod-files.js";

const protocols: Record<number, PortMapping["protocol"]> = {
  [Protocol.TCP]: "tcp",
  [Protocol.UDP]: "udp",
  [Protocol.SCTP]: "sctp",
};

export class SandboxService {
  /** Stop, remove and exit handling of one pod never overlap. */
  private readonly lock = new KeyedLock();
  /** Pods whose sandbox process exited while RunPodSandbox was still running: handled when it ends. */
  private readonly exitedWhileCreating = new Set<string>();
  /** Pending retries of interrupted pod creates/removals that recovery could not finish at once. */
  private readonly recoveryRetries = new RetryScheduler();
  /** Pods whose sandbox exit was seen but is not recorded yet (sandboxExited records it): NOTREADY. */
  private readonly exitsSeen = new Set<string>();
  /** Pods whose sandbox state recovery could not learn (the shim did not answer): NOTREADY, as containerd's unknown. */
  private readonly unknown = new Set<string>();

  constructor(
    private readonly ctx: CriContext,
    private readonly containers: ContainerService,
  ) {
    ctx.shims.onEvent((ev) => {
      if (ev.type !== "exit" || ev.execId !== "" || ev.namespace !== NS) return;
      const row = this.ctx.pods.get(ev.containerId);
      if (!row) return;
      this.exitsSeen.add(row.id);
      this.unknown.delete(row.id);
      if (row.phase === "creating") this.exitedWhileCreating.add(row.id);
      else this.noticeExit(row.id);
    });
  }

  /** Handles a sandbox exit in the background (from the exit event). */
  private noticeExit(id: string): void {
    void this.lock
      .run(id, () => this.sandboxExited(id))
      .catch((err: unknown) => this.ctx.log.warn({ err, pod: id }, "handling a sandbox exit failed"));
  }

  resolve(ref: string): PodView {
    const id = resolveId(ref, "pod sandbox", (p) => this.ctx.pods.idsWithPrefix(p));
    const row = this.ctx.pods.get(id)!;
    return { row, config: PodSandboxConfig.decode(row.config) };
  }

  /** The pod a container request names (full id or unique prefix). */
  view(id: string): PodView {
    return this.resolve(id);
  }

  // ---- run -----------------------------------------------------------------------------

  async run(config: PodSandboxConfig, runtimeHandler: string): Promise<string> {
    const md = config.metadata;
    if (!md?.name || !md.namespace)
      throw new InvalidArgumentError("pod sandbox config must have metadata.name and metadata.namespace");
    let handler;
    try {
      handler = this.ctx.handlers.get(runtimeHandler);
    } catch (err) {
      if (err instanceof NotFoundError) {
        throw new NotFoundError(
          `unknown runtime handler ${JSON.stringify(runtimeHandler)}: configure it under [runtime.handlers] (have: ${this.ctx.handlers.names().join(", ")})`,
        );
      }
      throw err;
    }
    const modes = podNamespaceModes(config);
    const hostNetwork = modes.network === NamespaceMode.NODE;
    const hostIpc = modes.ipc === NamespaceMode.NODE;

    const id = newId();
    const podDir = paths.podDir(this.ctx, id);
    const bundle = paths.bundle(this.ctx, id);
    this.ctx.pods.insert({
      id,
      name: md.name,
      namespace: md.namespace,
      uid: md.uid,
      attempt: md.attempt,
      config: Buffer.from(PodSandboxConfig.encode(config).finish()),
      phase: "creating",
      createdAt: nowNs(),
      runtimeHandler: handler.name,
      netnsPath: "",
      ips: [],
      podDir,
      sandboxExitedAt: 0n,
    });
    const undo: (() => unknown)[] = [() => this.ctx.pods.delete(id)];
    // Phase durations, logged at debug: where RunPodSandbox time goes (bench/cri.bench.ts).
    const t0 = performance.now();
    const phases: Record<string, number> = {};
    const mark = (name: string) => (phases[name] = Math.round(performance.now() - t0));
    try {
      await mkdir(podDir, { recursive: true, mode: 0o711 });
      undo.push(() => rm(podDir, { recursive: true, force: true }));

      let netnsPath = "";
      let ips: string[] = [];
      if (!hostNetwork) {
        undo.push(() => this.ctx.network.teardownPod(id));
        const net = await this.ctx.network.setupPod({
          podId: id,
          name: md.name,
          namespace: md.namespace,
          uid: md.uid,
          portMappings: config.portMappings
            .filter((p) => p.hostPort > 0)
            .map((p) => ({
              hostPort: p.hostPort,
              containerPort: p.containerPort,
              protocol: protocols[p.protocol] ?? "tcp",
              hostIP: p.hostIp || undefined,
            })),
          dns: config.dnsConfig
            ? {
                servers: config.dnsConfig.servers,
                searches: config.dnsConfig.searches,
                options: config.dnsConfig.options,
              }
            : undefined,
        });
        netnsPath = net.netnsPath;
        ips = net.ips.map((i) => i.address);
        this.ctx.pods.setNetwork(id, netnsPath, ips);
      }
      mark("network");

      const files = await writePodFiles({
        podDir,
        hostname: config.hostname,
        hostNetwork,
        dns: config.dnsConfig,
        ip: ips[0],
      });
      if (!hostIpc) {
        await mountShm(files.shm);
        undo.push(() => unmountShm(files.shm));
      }

      const spec = buildSandboxSpec({
        id,
        config,
        rootfsPath: this.ctx.sandboxRootfs,
        netnsPath: netnsPath || null,
        files,
        cgroupParent: podCgroupParent(config.linux?.cgroupParent, id, this.ctx.cgroupDriver),
        cgroupDriver: this.ctx.cgroupDriver,
        runtimeHandler: handler.name,
      });
      await mkdir(bundle, { recursive: true, mode: 0o711 });
      undo.push(() => rm(bundle, { recursive: true, force: true }));
      await writeFile(join(bundle, "config.json"), JSON.stringify(spec));
      mark("spec");

      // Runs after the task's delete (undo is last-first): runc leaves the pod level behind.
      undo.push(() => this.removeOwnCgroup(id, config));
      await this.ctx.shims.createTask({ namespace: NS, id, bundle, handler: handler.name, sandboxId: id });
      mark("createTask");
      undo.push(async () => {
        await this.ctx.shims.kill(NS, id, 9).catch(() => {});
        await this.ctx.shims.delete(NS, id);
      });
      await this.ctx.shims.start(NS, id);
      mark("start");
      this.ctx.pods.setPhase(id, "ready");
      this.ctx.log.debug({ pod: id, phasesMs: phases }, "pod sandbox running");
    } catch (err) {
      this.exitedWhileCreating.delete(id);
      await runUndo(undo, this.ctx.log, `RunPodSandbox ${id}`);
      this.exitsSeen.delete(id);
      throw err;
    }
    // Pod lifecycle events carry the sandbox id as the container id, as containerd sends them.
    await this.publish(id, ContainerEventType.CONTAINER_CREATED_EVENT);
    await this.publish(id, ContainerEventType.CONTAINER_STARTED_EVENT);
    if (this.exitedWhileCreating.delete(id)) this.noticeExit(id);
    return id;
  }

  // ---- stop / remove -------------------------------------------------------------------

  /** Stops every container, the sandbox process and the pod's network. Safe to repeat. */
  async stop(ref: string): Promise<void> {
    let id: string;
    try {
      id = this.resolve(ref).row.id;
    } catch (err) {
      // Idempotent (CRI): a pod already removed has nothing left to stop, as containerd.
      if (err instanceof NotFoundError) return;
      throw err;
    }
    await this.lock.run(id, async () => {
      const row = this.ctx.pods.get(id);
      if (row) await this.stopRow(row);
    });
  }

  private async stopRow(row: PodRow): Promise<void> {
    const id = row.id;
    const hadTask = this.hasTask(id);
    for (const c of this.ctx.containers.bySandbox(id)) await this.containers.stopRow(c, 0);
    if (this.hasTask(id)) {
      await this.ctx.shims.kill(NS, id, 9, { all: true }).catch(() => {});
      await this.ctx.shims.wait(NS, id).catch(() => {});
      await this.ctx.shims
        .delete(NS, id)
        .catch((err: unknown) => this.ctx.log.warn({ err, pod: id }, "deleting the sandbox task"));
    }
    unmountShm(podFiles(row.podDir).shm);
    await this.ctx.network.teardownPod(id);
    if (row.phase !== "removing" && row.phase !== "creating") this.ctx.pods.setPhase(id, "stopped");
    if (hadTask) await this.publish(id, ContainerEventType.CONTAINER_STOPPED_EVENT);
  }

  /**
   * The sandbox process of a ready pod exited by itself: record it (the pod is NOTREADY from
   * now on, across restarts), delete its task so the shim frees it, and tell kubelet with
   * CONTAINER_STOPPED for the pod. The network and the containers stay: kubelet sees the
   * NOTREADY pod and calls StopPodSandbox, as with containerd. Idempotent; call it under the
   * pod's lock. A pod without any task left (its shim record gone) counts as exited too.
   */
  private async sandboxExited(id: string): Promise<void> {
    const row = this.ctx.pods.get(id);
    if (!row || row.phase !== "ready") return;
    const known = row.sandboxExitedAt > 0n;
    if (!known) {
      let exitedAt = nowNs();
      let exitStatus: number | undefined;
      if (this.hasTask(id)) {
        let s;
        try {
          s = await this.ctx.shims.state(NS, id);
        } catch (err) {
          // Only a task its shim no longer knows counts as exited; an unanswered call decides nothing.
          if (!(err instanceof NotFoundError)) throw err;
        }
        if (s && s.status !== "stopped") {
          this.exitsSeen.delete(id); // a stale event: it runs
          this.unknown.delete(id);
          return;
        }
        if (s?.exitedAt) exitedAt = dateNs(s.exitedAt) || exitedAt;
        exitStatus = s?.exitStatus;
      }
      // Recorded before the delete: a crash in between leaves a known exit whose task recovery deletes.
      this.ctx.pods.setSandboxExited(id, exitedAt);
      this.exitsSeen.delete(id);
      this.unknown.delete(id);
      this.ctx.log.warn({ pod: id, exitStatus }, "the pod's sandbox process exited: the pod is NOTREADY");
    }
    if (this.hasTask(id)) {
      await this.ctx.shims
        .delete(NS, id)
        .catch((err: unknown) => this.ctx.log.warn({ err, pod: id }, "deleting the exited sandbox task"));
    }
    if (!known) await this.publish(id, ContainerEventType.CONTAINER_STOPPED_EVENT);
  }

  /** Removes the pod cgroup berth made (never a parent kubelet gave); a busy one is logged, not killed. */
  private async removeOwnCgroup(id: string, config: PodSandboxConfig): Promise<void> {
    const own = podCgroupOwned(config.linux?.cgroupParent, id);
    if (!own) return;
    const busy = await removePodCgroup(own);
    if (busy.length > 0) this.ctx.log.warn({ pod: id, cgroups: busy }, "pod cgroups still hold processes: left");
  }

  private async publish(id: string, type: ContainerEventType, status?: PodSandboxStatus): Promise<void> {
    try {
      this.ctx.events.publish({
        containerId: id,
        containerEventType: type,
        createdAt: nowNs(),
        podSandboxStatus: status ?? (await this.statusById(id)),
        containersStatuses: [],
      });
    } catch (err) {
      this.ctx.log.debug({ err }, "publishing a pod event failed");
    }
  }

  /** Removes the pod with everything in it; OK when it does not exist. */
  async remove(ref: string): Promise<void> {
    let pod: PodView;
    try {
      pod = this.resolve(ref);
    } catch (err) {
      if (err instanceof NotFoundError) return;
      throw err;
    }
    await this.lock.run(pod.row.id, async () => {
      const row = this.ctx.pods.get(pod.row.id);
      if (row) await this.removeRow(row);
    });
  }

  private async removeRow(row: PodRow): Promise<void> {
    this.ctx.pods.setPhase(row.id, "removing");
    await this.stopRow({ ...row, phase: "removing" });
    for (const c of this.ctx.containers.bySandbox(row.id)) await this.containers.removeRow(c);
    await this.removeOwnCgroup(row.id, PodSandboxConfig.decode(row.config));
    await rm(paths.bundle(this.ctx, row.id), { recursive: true, force: true });
    await rm(row.podDir, { recursive: true, force: true });
    const last = (await this.statusOf(row, false)).status;
    this.ctx.pods.delete(row.id);
    this.exitsSeen.delete(row.id);
    this.unknown.delete(row.id);
    await this.publish(row.id, ContainerEventType.CONTAINER_DELETED_EVENT, last);
  }

  private hasTask(id: string): boolean {
    return this.ctx.shims.has(NS, id);
  }

  // ---- status / list -------------------------------------------------------------------

  /** The pod's state as berthd keeps it (no shim round trip). */
  private liveState(row: PodRow): { state: PodSandboxState; status: string } {
    const notReady = PodSandboxState.SANDBOX_NOTREADY;
    if (row.sandboxExitedAt > 0n || this.exitsSeen.has(row.id)) return { state: notReady, status: "exited" };
    if (this.unknown.has(row.id)) return { state: notReady, status: "unknown" };
    if (row.phase !== "ready" || !this.hasTask(row.id)) return { state: notReady, status: "deleted" };
    return { state: PodSandboxState.SANDBOX_READY, status: "running" };
  }

  async statusOf(row: PodRow, verbose: boolean): Promise<{ status: PodSandboxStatus; info: Record<string, string> }> {
    const config = PodSandboxConfig.decode(row.config);
    const live = this.liveState(row);
    const ns = config.linux?.securityContext?.namespaceOptions;
    const status: PodSandboxStatus = {
      id: row.id,
      metadata: config.metadata,
      state: live.state,
      createdAt: row.createdAt,
      // containerd reports the IP until the network is torn down (StopPodSandbox), even for a
      // pod whose sandbox process exited, and none after.
      network: {
        ip: row.phase === "ready" ? (row.ips[0] ?? "") : "",
        additionalIps: row.phase === "ready" ? row.ips.slice(1).map((ip) => ({ ip })) : [],
      },
      linux: {
        namespaces: {
          options: {
            network: ns?.network ?? NamespaceMode.POD,
            pid: ns?.pid ?? NamespaceMode.POD,
            ipc: ns?.ipc ?? NamespaceMode.POD,
            targetId: ns?.targetId ?? "",
            usernsOptions: ns?.usernsOptions,
          },
        },
      },
      labels: config.labels,
      annotations: config.annotations,
      runtimeHandler: row.runtimeHandler,
    };
    const info: Record<string, string> = {};
    if (verbose) {
      const rec = this.ctx.shims.record(NS, row.id);
      // Verbose status is not polled: the pid (and the process status) come from the shim.
      const s =
        live.state === PodSandboxState.SANDBOX_READY
          ? await this.ctx.shims.state(NS, row.id).catch(() => undefined)
          : undefined;
      info.info = JSON.stringify({
        pid: s?.pid ?? 0,
        processStatus: s?.status ?? live.status,
        phase: row.phase,
        netNamespacePath: row.netnsPath,
        podDir: row.podDir,
        runtimeHandler: row.runtimeHandler,
        runtimeType: rec?.runtimeType ?? "",
        shimAddress: rec?.address ?? "",
        config: PodSandboxConfig.toJSON(config),
      });
    }
    return { status, info };
  }

  async status(ref: string, verbose: boolean) {
    return this.statusOf(this.resolve(ref).row, verbose);
  }

  /** The status of a pod by exact id, or undefined (for events). */
  async statusById(id: string): Promise<PodSandboxStatus | undefined> {
    const row = this.ctx.pods.get(id);
    return row ? (await this.statusOf(row, false)).status : undefined;
  }

  async list(filter: PodSandboxFilter | undefined): Promise<PodSandbox[]> {
    let rows = this.ctx.pods.list().filter((r) => r.phase !== "creating");
    if (filter?.id) rows = rows.filter((r) => r.id.startsWith(filter.id));
    const out: PodSandbox[] = [];
    for (const row of rows) {
      const config = PodSandboxConfig.decode(row.config);
      if (!matchesLabels(config.labels, filter?.labelSelector)) continue;
      const { state } = this.liveState(row);
      if (filter?.state && filter.state.state !== state) continue;
      out.push({
        id: row.id,
        metadata: config.metadata,
        state,
        createdAt: row.createdAt,
        labels: config.labels,
        annotations: config.annotations,
        runtimeHandler: row.runtimeHandler,
      });
    }
    return out;
  }

  // ---- recovery ------------------------------------------------------------------------

  /**
   * After a restart: rolls back half-run pods, finishes half-removed ones, marks pods whose
   * sandbox process exited meanwhile NOTREADY; returns the ids whose network must stay.
   */
  async recover(): Promise<Set<string>> {
    const keep = new Set<string>();
    for (const row of this.ctx.pods.list()) {
      if (row.phase === "creating" || row.phase === "removing") {
        await this.finishInterrupted(row.id, 0);
        continue;
      }
      try {
        if (row.phase === "ready") {
          keep.add(row.id);
          // A sandbox process that died while berthd was down (no exit event reached us); the
          // one time the pod's kept state is refreshed from its shim.
          await this.lock.run(row.id, () => this.sandboxExited(row.id));
        }
      } catch (err) {
        // The shim did not tell (sandboxExited only throws for that): unknown, reported NOTREADY.
        if (row.phase === "ready") this.unknown.add(row.id);
        this.ctx.log.warn({ err, pod: row.id }, "recovering a pod failed");
      }
    }
    return keep;
  }

  /**
   * Rolls back an interrupted RunPodSandbox or finishes an interrupted RemovePodSandbox. Every
   * step is idempotent, so an attempt that fails (a shim not answering yet, a busy mount) is
   * tried again later, backing off, until the row is gone: a pod half made or half removed must
   * never stay behind for good (a 'creating' pod is not even listed for kubelet to remove).
   */
  private async finishInterrupted(id: string, attempt: number): Promise<void> {
    await this.lock.run(id, async () => {
      const row = this.ctx.pods.get(id);
      if (!row || (row.phase !== "creating" && row.phase !== "removing")) return;
      try {
        if (row.phase === "creating") {
          if (this.hasTask(row.id)) {
            await this.ctx.shims.kill(NS, row.id, 9, { all: true }).catch(() => {});
            await this.ctx.shims.wait(NS, row.id).catch(() => {});
            await this.ctx.shims.delete(NS, row.id).catch((err: unknown) => {
              if (!(err instanceof NotFoundError)) throw err;
            });
          }
          unmountShm(podFiles(row.podDir).shm);
          await this.ctx.network.teardownPod(row.id);
          await this.removeOwnCgroup(row.id, PodSandboxConfig.decode(row.config));
          await rm(paths.bundle(this.ctx, row.id), { recursive: true, force: true });
          await rm(row.podDir, { recursive: true, force: true });
          this.ctx.pods.delete(row.id);
          this.exitsSeen.delete(row.id);
          this.unknown.delete(row.id);
          this.ctx.log.info({ pod: row.id }, "rolled back an interrupted RunPodSandbox");
        } else {
          await this.removeRow(row);
          this.ctx.log.info({ pod: row.id }, "finished an interrupted RemovePodSandbox");
        }
      } catch (err) {
        this.ctx.log.warn(
          { err, pod: id, phase: row.phase, retryInMs: backoffMs(attempt) },
          "finishing an interrupted RunPodSandbox/RemovePodSandbox failed; trying again later",
        );
        this.recoveryRetries.schedule(attempt, () => {
          this.finishInterrupted(id, attempt + 1).catch((e: unknown) =>
            this.ctx.log.warn({ err: e, pod: id }, "retrying an interrupted pod create/remove failed"),
          );
        });
      }
    });
  }

  /** Cancels pending recovery retries (berthd stopping). */
  close(): void {
    this.recoveryRetries.close();
  }
}
