// The pod and container half of the CRI RuntimeService: builds the status store, the
// operation deps (one file per RPC under container/ and sandbox/), the exit monitor and the
// stats service over their dependencies and exposes them as CRI handlers (see handlers.ts).
// The composition root calls createPodRuntime(), then recover() before serving, and close()
// at shutdown (shims and containers keep running; removals under way in the trash finish).
import {
  ContainerStatsResponse,
  ContainerStatusResponse,
  CreateContainerResponse,
  ExecSyncResponse,
  ListContainerStatsResponse,
  ListContainersResponse,
  ListPodSandboxResponse,
  ListPodSandboxStatsResponse,
  PodSandboxStatsResponse,
  PodSandboxStatusResponse,
  RunPodSandboxResponse,
  type Container,
  type ContainerFilter,
  type ContainerStatus,
  type PodSandbox,
  type PodSandboxFilter,
} from "../gen/cri/runtime/v1/api.js";
import { join } from "node:path";
import { killStalePlugins } from "../network/index.js";
import { InvalidArgumentError } from "../util/errors.js";
import { Bundles } from "./bundle.js";
import { createContainer } from "./container/create.js";
import type { ContainerDeps } from "./container/deps.js";
import { execSync } from "./container/exec-sync.js";
import { listContainers } from "./container/list.js";
import { recoverContainers } from "./container/recover.js";
import { removeContainer } from "./container/remove.js";
import { reopenContainerLog } from "./container/reopen-log.js";
import { startContainer } from "./container/start.js";
import { containerStatus, containerStatusNow, containerStatusOf, polledContainerStatus } from "./container/status.js";
import { stopContainer, waitExit } from "./container/stop.js";
import { updateContainerResources } from "./container/update-resources.js";
import { type CriContext, KeyedLock, NO_INFO, nowNs } from "./context.js";
import { ExitMonitor } from "./exit-monitor.js";
import type { CriMethodHandlers } from "./handlers.js";
import { RetryScheduler } from "./retry.js";
import type { SandboxDeps } from "./sandbox/deps.js";
import { listPodSandboxes } from "./sandbox/list.js";
import { recoverSandboxes } from "./sandbox/recover.js";
import { removePodSandbox } from "./sandbox/remove.js";
import { runPodSandbox } from "./sandbox/run.js";
import { sandboxStatusById, sandboxStatusOf, sandboxStatusVerbose } from "./sandbox/status.js";
import { stopPodSandbox } from "./sandbox/stop.js";
import { MetricsService, metricDescriptors } from "./metrics.js";
import { sweepOrphans } from "./orphan-sweep.js";
import { StatsService } from "./stats.js";
import { Trash } from "./trash.js";
import { ContainerStore, SandboxStore } from "./store/index.js";
import { updatePodResources } from "./pod-resources.js";

/** How long recovery waits for a killed orphaned task to end (berthd does not serve meanwhile). */
const ORPHAN_WAIT_MS = 10_000;

export interface PodRuntime {
  handlers: Partial<CriMethodHandlers>;
  containers: ContainerDeps;
  sandboxes: SandboxDeps;
  listPodSandboxes(filter?: PodSandboxFilter): PodSandbox[];
  listContainers(filter?: ContainerFilter): Promise<Container[]>;
  /** Reattaches to what survived a restart, finishes or rolls back interrupted work, starts reconciling. */
  recover(): Promise<void>;
  /** Stops the background work; resolves once the directories in the trash are deleted. */
  close(): Promise<void>;
}

export function createPodRuntime(ctx: CriContext): PodRuntime {
  const bundles = new Bundles(ctx.stateDir);
  const trash = new Trash(join(ctx.stateDir, "trash"), ctx.log);
  const sandboxStore = new SandboxStore(ctx.pods);
  const containers: ContainerDeps = {
    store: new ContainerStore(ctx.containers),
    sandboxes: sandboxStore,
    runtime: ctx.shims,
    images: ctx.images,
    bundles,
    trash,
    events: ctx.events,
    podStatus: async (id) => sandboxStatusById(sandboxes, id),
    lock: new KeyedLock(),
    retries: new RetryScheduler(),
    log: ctx.log,
    cgroupDriver: ctx.cgroupDriver,
    maxLogLineSize: ctx.maxLogLineSize,
    cdiSpecDirs: ctx.cdiSpecDirs,
    handlerFeatures: ctx.handlerFeatures,
    nri: ctx.nri,
  };
  const sandboxes: SandboxDeps = {
    store: sandboxStore,
    containers,
    runtime: ctx.shims,
    network: ctx.network,
    runtimeClasses: ctx.handlers,
    bundles,
    events: ctx.events,
    lock: new KeyedLock(),
    retries: new RetryScheduler(),
    log: ctx.log,
    cgroupDriver: ctx.cgroupDriver,
    sandboxRootfs: ctx.sandboxRootfs,
    handlerFeatures: ctx.handlerFeatures,
    nri: ctx.nri,
  };
  // Subscribed now: exits that happen while recovery runs are heard.
  const monitor = new ExitMonitor(containers, sandboxes);
  const usage = {
    containers: containers.store,
    pods: sandboxStore,
    runtime: ctx.shims,
    images: ctx.images,
    bundles,
    cgroupDriver: ctx.cgroupDriver,
  };
  const stats = new StatsService(usage);
  const metrics = new MetricsService(usage);

  const handlers: Partial<CriMethodHandlers> = {
    async runPodSandbox(req) {
      if (!req.config) throw new InvalidArgumentError("RunPodSandbox needs a config");
      const podSandboxId = await runPodSandbox(sandboxes, req.config, req.runtimeHandler);
      return RunPodSandboxResponse.fromPartial({ podSandboxId });
    },
    async stopPodSandbox(req) {
      await stopPodSandbox(sandboxes, req.podSandboxId);
      return {};
    },
    async removePodSandbox(req) {
      await removePodSandbox(sandboxes, req.podSandboxId);
      return {};
    },
    async podSandboxStatus(req) {
      const pod = sandboxStore.resolve(req.podSandboxId);
      // kubelet's poll (not verbose) has no await on its way: every promise and microtask of a
      // read costs most while V8 still interprets berthd's code (its first minutes).
      const { status, info } = req.verbose
        ? await sandboxStatusVerbose(sandboxes, pod, true)
        : { status: sandboxStatusOf(pod), info: NO_INFO };
      // Each container's status is built at once when its image_ref is kept
      // (containerStatusNow), and looked up (memoised per image) only when it is not.
      let imageRefs: Map<string, Promise<string>> | undefined;
      const cs: ContainerStatus[] = [];
      for (const c of containers.store.bySandbox(pod.id)) {
        if (c.status.phase === "creating") continue;
        const now = containerStatusNow(containers, c);
        cs.push(now ?? (await containerStatusOf(containers, c, false, (imageRefs ??= new Map()))).status);
      }
      // Complete messages already: no fromPartial deep copy (kubelet polls this).
      const r: PodSandboxStatusResponse = { status, info, containersStatuses: cs, timestamp: nowNs() };
      return r;
    },
    async listPodSandbox(req) {
      // Complete messages already: no fromPartial deep copy of every item (polled every second).
      const r: ListPodSandboxResponse = { items: listPodSandboxes(sandboxes, req.filter) };
      return r;
    },
    async createContainer(req) {
      if (!req.config) throw new InvalidArgumentError("CreateContainer needs a config");
      const pod = sandboxStore.resolve(req.podSandboxId);
      return CreateContainerResponse.fromPartial({ containerId: await createContainer(containers, pod, req.config) });
    },
    async startContainer(req) {
      await startContainer(containers, req.containerId);
      return {};
    },
    async stopContainer(req) {
      await stopContainer(containers, req.containerId, Number(req.timeout));
      return {};
    },
    async removeContainer(req) {
      await removeContainer(containers, req.containerId);
      return {};
    },
    async containerStatus(req) {
      // kubelet's poll: answered without an await when the container's image_ref is kept.
      const now = req.verbose ? undefined : polledContainerStatus(containers, req.containerId);
      if (now) return { status: now, info: NO_INFO } satisfies ContainerStatusResponse;
      const { status, info } = await containerStatus(containers, req.containerId, req.verbose);
      const r: ContainerStatusResponse = { status, info };
      return r;
    },
    async listContainers(req) {
      const r: ListContainersResponse = { containers: listContainers(containers, req.filter) };
      return r;
    },
    async updatePodSandboxResources(req) {
      const pod = sandboxStore.resolve(req.podSandboxId);
      const row = { ...pod.info, phase: pod.status.phase, sandboxExitedAt: pod.status.exitedAt };
      await updatePodResources(ctx, row, pod.config, req.resources, req.overhead);
      return {};
    },
    async updateContainerResources(req) {
      await updateContainerResources(containers, req.containerId, req.linux, req.annotations);
      return {};
    },
    async execSync(req, call) {
      const r = await execSync(containers, req.containerId, req.cmd, Number(req.timeout), call.signal);
      return ExecSyncResponse.fromPartial(r);
    },
    async reopenContainerLog(req) {
      reopenContainerLog(containers, req.containerId);
      return {};
    },
    async containerStats(req) {
      return ContainerStatsResponse.fromPartial({ stats: await stats.container(req.containerId) });
    },
    async listContainerStats(req) {
      return ListContainerStatsResponse.fromPartial({ stats: await stats.listContainers(req.filter) });
    },
    async podSandboxStats(req) {
      return PodSandboxStatsResponse.fromPartial({ stats: await stats.pod(req.podSandboxId) });
    },
    async listPodSandboxStats(req) {
      return ListPodSandboxStatsResponse.fromPartial({ stats: await stats.listPods(req.filter) });
    },
    async listMetricDescriptors() {
      return { descriptors: metricDescriptors() };
    },
    async listPodSandboxMetrics() {
      return { podMetrics: await metrics.listPodSandboxMetrics() };
    },
    async getContainerEvents(_req, call) {
      await ctx.events.stream((e) => call.send(e), call.signal);
    },
  };

  return {
    handlers,
    containers,
    sandboxes,
    listPodSandboxes: (filter) => listPodSandboxes(sandboxes, filter),
    listContainers: async (filter) => listContainers(containers, filter),
    async recover() {
      // A CNI ADD the killed berthd left running would finish after the rollback below: end it first.
      for (const p of await killStalePlugins(ctx.network.netnsDir))
        ctx.log.warn({ plugin: p }, "killed a CNI plugin a previous berthd left running");
      // What removals a previous berthd left in the trash (killed before they ended).
      const emptied = await trash.empty();
      if (emptied.length > 0) ctx.log.info({ entries: emptied.length }, "emptied the trash a previous berthd left");
      const recovered = await ctx.shims.recover();
      ctx.log.info({ tasks: recovered.length }, "reattached to shims");
      const keep = await recoverSandboxes(sandboxes);
      await recoverContainers(containers);
      // Tasks no pod or container record claims were left by a crash between steps: remove them.
      for (const r of ctx.shims.list()) {
        if (sandboxStore.get(r.id) || containers.store.get(r.id)) continue;
        await ctx.shims.kill(r.namespace, r.id, 9, { all: true }).catch(() => {});
        // Bounded: berthd does not serve until this ends. A task still there is met again at
        // the next start (the shim keeps its record).
        if (!(await waitExit({ runtime: ctx.shims }, r.id, ORPHAN_WAIT_MS, r.namespace))) {
          ctx.log.warn({ task: r.id }, "an orphaned task did not end after SIGKILL; left for the next start");
          continue;
        }
        await ctx.shims.delete(r.namespace, r.id).catch(() => {});
        ctx.log.info({ task: r.id }, "removed an orphaned task");
      }
      // What a crash separated from its record (a netns file never mounted, a bundle, a
      // mount, an IP, a cgroup): removed, each logged (orphans.ts says what counts as owned).
      await sweepOrphans({
        stateDir: ctx.stateDir,
        pods: sandboxStore,
        containers: containers.store,
        network: ctx.network,
        log: ctx.log,
      });
      const net = await ctx.network.recover(keep);
      if (net.cleaned.length > 0)
        ctx.log.info({ pods: net.cleaned }, "released the networks of pods that no longer exist");
      // From now on a lost exit event is caught within one reconciliation interval.
      monitor.start();
    },
    async close() {
      monitor.close();
      sandboxes.retries.close();
      containers.retries.close();
      for (const e of containers.store.list()) {
        e.io?.close();
        e.io = undefined;
      }
      await trash.settled();
    },
  };
}
