// CRI metrics (ListMetricDescriptors, ListPodSandboxMetrics): the cAdvisor-named container
// metrics kubelet exposes when it takes pod and container stats from the runtime
// (PodAndContainerStatsFromCRI), named and labelled as containerd 2.x does
// (metric-descriptors.ts). Values come from the task's cgroup metrics (asked of the shim, as
// ContainerStats does), the container's processes under /proc, its OCI spec, the
// snapshotter's usage of the writable layer, the pod cgroup, and the pod's network namespace.
import { statfs } from "node:fs/promises";
import type { ContainerMetrics, Metric, PodSandboxMetrics } from "../gen/cri/runtime/v1/api.js";
import { nowNs } from "./context.js";
import { metricType, type MetricName } from "./metric-descriptors.js";
import { cgroupMetrics, networkMetrics, pressureMetrics, specMetrics, type Value } from "./metric-values.js";
import { readCgroupUsage } from "./pod-cgroup.js";
import type { ContainerEntry, SandboxEntry } from "./store/index.js";
import { readCgroupSwap } from "./usage/cgroup-files.js";
import { readNetDev } from "./usage/net-dev.js";
import { processCounts } from "./usage/processes.js";
import { UsageSources, type UsageDeps } from "./usage/sources.js";

export { metricDescriptors } from "./metric-descriptors.js";

const SEC = 1_000_000_000n;

/** Collects metrics for one subject (a container or a pod) with its base label values. */
class Sink {
  readonly metrics: Metric[] = [];
  constructor(
    private readonly base: string[],
    private readonly timestamp: bigint,
  ) {}
  add(name: MetricName, value: bigint | number | undefined, extra: string[] = []): void {
    if (value === undefined) return;
    const v = BigInt(value);
    this.metrics.push({
      name,
      timestamp: this.timestamp,
      metricType: metricType(name),
      labelValues: [...this.base, ...extra],
      value: { value: v < 0n ? 0n : v },
    });
  }
  addAll(values: Value[]): void {
    for (const [name, value, extra] of values) this.add(name, value, extra);
  }
}

export class MetricsService {
  private readonly src: UsageSources;
  constructor(private readonly ctx: UsageDeps) {
    this.src = new UsageSources(ctx);
  }

  private async container(pod: SandboxEntry, row: ContainerEntry, ts: bigint): Promise<ContainerMetrics> {
    const config = row.config;
    const meta = pod.config.metadata;
    const image = config.image?.userSpecifiedImage || config.image?.image || row.info.imageRef;
    const m = new Sink(
      [meta?.name ?? "", meta?.namespace ?? "", config.metadata?.name ?? row.info.name, row.id, image],
      ts,
    );
    const stats = await this.src.taskStats(row.id);
    m.addAll(cgroupMetrics(stats));
    if (stats) m.addAll(pressureMetrics(await this.src.containerPressure(row.id, stats)));
    m.addAll(specMetrics(this.ctx.bundles.tryReadSpec(row.id)));

    const pid = await this.src.pid(row.id);
    if (pid > 0) {
      const counts = await processCounts(pid);
      m.add("container_threads", counts.threads);
      m.add("container_file_descriptors", counts.fds);
      m.add("container_sockets", counts.sockets);
    }

    // The writable layer's use, on the filesystem that holds it (berth's root).
    const root = this.ctx.images.opts.root;
    const du = await this.ctx.images.snapshotter.usage(row.id).catch(() => undefined);
    if (du) m.add("container_fs_usage_bytes", du.size, [root]);
    const fs = await statfs(root).catch(() => undefined);
    if (fs) {
      m.add("container_fs_limit_bytes", fs.blocks * fs.bsize, [root]);
      m.add("container_fs_inodes_total", fs.files, [root]);
      m.add("container_fs_inodes_free", fs.ffree, [root]);
    }
    if (row.status.startedAt > 0n) m.add("container_start_time_seconds", row.status.startedAt / SEC);
    m.add("container_last_seen", ts / SEC);
    return { containerId: row.id, metrics: m.metrics };
  }

  private async pod(row: SandboxEntry, ts: bigint): Promise<PodSandboxMetrics> {
    const meta = row.config.metadata;
    const m = new Sink([meta?.name ?? row.info.name, meta?.namespace ?? row.info.namespace, "", row.id, ""], ts);
    // A host-network pod's interfaces are the node's: not the pod's to report.
    const pid = row.info.netnsPath ? await this.src.pid(row.id) : 0;
    if (pid > 0) m.addAll(networkMetrics(await readNetDev(pid)));
    // The pod cgroup's totals, as cAdvisor reports a pod cgroup (container label empty).
    const path = this.src.podCgroupPath(row);
    const u = path ? await readCgroupUsage(path).catch(() => undefined) : undefined;
    if (u) {
      m.add("container_cpu_usage_seconds_total", u.cpuNs / SEC);
      m.add("container_memory_usage_bytes", u.usage);
      m.add("container_memory_working_set_bytes", u.workingSet);
      m.add("container_memory_rss", u.rss);
      const swap = await readCgroupSwap(path!).catch(() => undefined);
      if (swap) m.add("container_memory_swap", swap.usage);
      m.addAll(pressureMetrics(await this.src.podPressure(row)));
    }
    const containers = this.ctx.containers.bySandbox(row.id).filter((c) => c.status.phase === "created");
    return {
      podSandboxId: row.id,
      metrics: m.metrics,
      containerMetrics: await Promise.all(containers.map((c) => this.container(row, c, ts))),
    };
  }

  async listPodSandboxMetrics(): Promise<PodSandboxMetrics[]> {
    const ts = nowNs();
    const pods = this.ctx.pods.list().filter((r) => r.status.phase === "ready");
    return Promise.all(pods.map((p) => this.pod(p, ts)));
  }
}
