// The pod and container half of the CRI RuntimeService: builds the sandbox, container,
// stats and event services over their dependencies and exposes them as CRI handlers (see
// handlers.ts). The composition root calls createPodRuntime(), then recover() before
// serving, and close() at shutdown (shims and containers keep running).
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
} from "../gen/cri/runtime/v1/api.js";
import { InvalidArgumentError } from "../util/errors.js";
import { ContainerService } from "./container-service.js";
import { type CriContext, nowNs } from "./context.js";
import type { RuntimeHandlers } from "./handlers.js";
import { SandboxService } from "./sandbox-service.js";
import { MetricsService, metricDescriptors } from "./metrics.js";
import { StatsService } from "./stats.js";
import { updatePodResources } from "./pod-resources.js";

export interface PodRuntime {
  handlers: Partial<RuntimeHandlers>;
  sandboxes: SandboxService;
  containers: ContainerService;
  /** Reattaches to what survived a restart and finishes or rolls back interrupted work. */
  recover(): Promise<void>;
  close(): void;
}

export function createPodRuntime(ctx: CriContext): PodRuntime {
  // eslint-disable-next-line prefer-const -- the two services refer to each other
  let sandboxes: SandboxService;
  const containers = new ContainerService(ctx, (id) => sandboxes.statusById(id));
  sandboxes = new SandboxService(ctx, containers);
  const stats = new StatsService(ctx);
  const metrics = new MetricsService(ctx);

  const handlers: Partial<RuntimeHandlers> = {
    async runPodSandbox(req) {
      if (!req.config) throw new InvalidArgumentError("RunPodSandbox needs a config");
      return RunPodSandboxResponse.fromPartial({ podSandboxId: await sandboxes.run(req.config, req.runtimeHandler) });
    },
    async stopPodSandbox(req) {
      await sandboxes.stop(req.podSandboxId);
      return {};
    },
    async removePodSandbox(req) {
      await sandboxes.remove(req.podSandboxId);
      return {};
    },
    async podSandboxStatus(req) {
      const pod = sandboxes.resolve(req.podSandboxId);
      const { status, info } = await sandboxes.statusOf(pod.row, req.verbose);
      const imageRefs = new Map<string, Promise<string>>();
      const cs = await Promise.all(
        ctx.containers
          .bySandbox(pod.row.id)
          .filter((c) => c.phase !== "creating")
          .map(async (c) => (await containers.statusOf(c, false, imageRefs)).status),
      );
      return PodSandboxStatusResponse.fromPartial({ status, info, containersStatuses: cs, timestamp: nowNs() });
    },
    async listPodSandbox(req) {
      // Complete messages already: no fromPartial deep copy of every item (polled every second).
      const r: ListPodSandboxResponse = { items: await sandboxes.list(req.filter) };
      return r;
    },
    async createContainer(req) {
      if (!req.config) throw new InvalidArgumentError("CreateContainer needs a config");
      const pod = sandboxes.resolve(req.podSandboxId);
      return CreateContainerResponse.fromPartial({ containerId: await containers.create(pod, req.config) });
    },
    async startContainer(req) {
      const row = containers.resolve(req.containerId);
      await containers.start(row.id, sandboxes.view(row.sandboxId));
      return {};
    },
    async stopContainer(req) {
      await containers.stop(req.containerId, Number(req.timeout));
      return {};
    },
    async removeContainer(req) {
      await containers.remove(req.containerId);
      return {};
    },
    async containerStatus(req) {
      const { status, info } = await containers.status(req.containerId, req.verbose);
      return ContainerStatusResponse.fromPartial({ status, info });
    },
    async listContainers(req) {
      const r: ListContainersResponse = { containers: await containers.list(req.filter) };
      return r;
    },
    async updatePodSandboxResources(req) {
      const pod = sandboxes.resolve(req.podSandboxId);
      await updatePodResources(ctx, pod.row, pod.config, req.resources, req.overhead);
      return {};
    },
    async updateContainerResources(req) {
      await containers.updateResources(req.containerId, req.linux, req.annotations);
      return {};
    },
    async execSync(req, call) {
      const r = await containers.execSync(req.containerId, req.cmd, Number(req.timeout), call.signal);
      return ExecSyncResponse.fromPartial(r);
    },
    async reopenContainerLog(req) {
      await containers.reopenLog(req.containerId);
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
    sandboxes,
    containers,
    async recover() {
      const recovered = await ctx.shims.recover();
      ctx.log.info({ tasks: recovered.length }, "reattached to shims");
      const keep = await sandboxes.recover();
      await containers.recover();
      // Tasks no pod or container row claims were left by a crash between steps: remove them.
      for (const r of ctx.shims.list()) {
        if (ctx.pods.get(r.id) || ctx.containers.get(r.id)) continue;
        await ctx.shims.kill(r.namespace, r.id, 9, { all: true }).catch(() => {});
        await ctx.shims.wait(r.namespace, r.id).catch(() => {});
        await ctx.shims.delete(r.namespace, r.id).catch(() => {});
        ctx.log.info({ task: r.id }, "removed an orphaned task");
      }
      const net = await ctx.network.recover(keep);
      if (net.cleaned.length > 0)
        ctx.log.info({ pods: net.cleaned }, "released the networks of pods that no longer exist");
    },
    close() {
      sandboxes.close();
      containers.close();
    },
  };
}
