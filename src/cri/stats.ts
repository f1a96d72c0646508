// Container and pod resource usage for ContainerStats / PodSandboxStats: CPU and memory
// from the task's cgroup metrics (asked of the shim: cgroups v1 here, v2 where the host
// has it), the writable layer's disk usage from the snapshotter. A pod's total is read from
// its pod cgroup (kubelet's cgroup parent, or berth's own /berth/<podId>), as containerd
// reads it, so it counts every process of the pod, exited containers' page cache included.
import {
  PodSandboxConfig,
  type ContainerStats,
  type ContainerStatsFilter,
  type PodSandboxStats,
  type PodSandboxStatsFilter,
} from "../gen/cri/runtime/v1/api.js";
import type { ImageService } from "../images/service.js";
import { type CgroupDriver, podCgroupParent } from "../oci/index.js";
import type { TaskRuntime, TaskStats } from "../runtime/index.js";
import type { Bundles } from "./bundle.js";
import { CRI_NAMESPACE as NS, matchesLabels, nowNs } from "./context.js";
import type { ContainerEntry, ContainerStore, SandboxEntry, SandboxStore } from "./store/index.js";
import { readCgroupUsage, type CgroupUsage } from "./pod-cgroup.js";

const u64 = (value: bigint) => ({ value });

type Usage = CgroupUsage;

function usageOf(s: TaskStats): Usage | undefined {
  if (s.v1) {
    const m = s.v1.memory;
    const usage = m?.usage?.usage ?? 0n;
    const inactive = m?.totalInactiveFile ?? 0n;
    return {
      cpuNs: s.v1.cpu?.usage?.total ?? 0n,
      // kubelet's working set: usage minus the inactive file cache, never below zero.
      workingSet: usage > inactive ? usage - inactive : 0n,
      usage,
      rss: m?.totalRss ?? 0n,
      pageFaults: m?.totalPgFault ?? 0n,
      majorPageFaults: m?.totalPgMajFault ?? 0n,
    };
  }
  if (s.v2) {
    const m = s.v2.memory;
    const usage = m?.usage ?? 0n;
    const inactive = m?.inactiveFile ?? 0n;
    return {
      cpuNs: (s.v2.cpu?.usageUsec ?? 0n) * 1000n,
      workingSet: usage > inactive ? usage - inactive : 0n,
      usage,
      rss: m?.anon ?? 0n,
      pageFaults: m?.pgfault ?? 0n,
      majorPageFaults: m?.pgmajfault ?? 0n,
    };
  }
  return undefined;
}

export interface StatsDeps {
  containers: ContainerStore;
  pods: SandboxStore;
  runtime: Pick<TaskRuntime, "has" | "stats">;
  images: Pick<ImageService, "snapshotter" | "opts">;
  bundles: Bundles;
  cgroupDriver: CgroupDriver;
}

export class StatsService {
  constructor(private readonly ctx: StatsDeps) {}

  private async taskUsage(id: string): Promise<Usage | undefined> {
    if (!this.ctx.runtime.has(NS, id)) return undefined;
    try {
      return usageOf(await this.ctx.runtime.stats(NS, id));
    } catch {
      return undefined;
    }
  }

  async containerStats(row: ContainerEntry): Promise<ContainerStats> {
    const config = row.config;
    const ts = nowNs();
    const u = await this.taskUsage(row.id);
    let writable: ContainerStats["writableLayer"];
    try {
      const du = await this.ctx.images.snapshotter.usage(row.id);
      writable = {
        timestamp: ts,
        fsId: { mountpoint: this.ctx.images.opts.root },
        usedBytes: u64(BigInt(du.size)),
        inodesUsed: u64(BigInt(du.inodes)),
      };
    } catch {
      writable = undefined;
    }
    return {
      attributes: { id: row.id, metadata: config.metadata, labels: config.labels, annotations: config.annotations },
      cpu: u
        ? { timestamp: ts, usageCoreNanoSeconds: u64(u.cpuNs), usageNanoCores: undefined, psi: undefined }
        : undefined,
      memory: u
        ? {
            timestamp: ts,
            workingSetBytes: u64(u.workingSet),
            availableBytes: undefined,
            usageBytes: u64(u.usage),
            rssBytes: u64(u.rss),
            pageFaults: u64(u.pageFaults),
            majorPageFaults: u64(u.majorPageFaults),
            psi: undefined,
          }
        : undefined,
      writableLayer: writable,
      swap: undefined,
      io: undefined,
    };
  }

  async container(ref: string): Promise<ContainerStats> {
    return this.containerStats(this.ctx.containers.resolve(ref));
  }

  async listContainers(filter: ContainerStatsFilter | undefined): Promise<ContainerStats[]> {
    const rows = this.ctx.containers
      .list()
      .filter((r) => r.status.phase === "created")
      .filter((r) => !filter?.id || r.id.startsWith(filter.id))
      .filter((r) => !filter?.podSandboxId || r.info.sandboxId.startsWith(filter.podSandboxId))
      .filter((r) => matchesLabels(r.config.labels, filter?.labelSelector));
    return Promise.all(rows.map((r) => this.containerStats(r)));
  }

  async podStats(row: SandboxEntry): Promise<PodSandboxStats> {
    const config = row.config;
    const ts = nowNs();
    const containers = await Promise.all(
      this.ctx.containers
        .bySandbox(row.id)
        .filter((c) => c.status.phase === "created")
        .map((c) => this.containerStats(c)),
    );
    const pod = (await this.podCgroupUsage(row, config)) ?? (await this.summedUsage(row.id, containers));
    return {
      attributes: { id: row.id, metadata: config.metadata, labels: config.labels, annotations: config.annotations },
      linux: {
        cpu: { timestamp: ts, usageCoreNanoSeconds: u64(pod.cpuNs), usageNanoCores: undefined, psi: undefined },
        memory: {
          timestamp: ts,
          workingSetBytes: u64(pod.workingSet),
          availableBytes: undefined,
          usageBytes: u64(pod.usage),
          rssBytes: pod.rss === undefined ? undefined : u64(pod.rss),
          pageFaults: pod.pageFaults === undefined ? undefined : u64(pod.pageFaults),
          majorPageFaults: pod.majorPageFaults === undefined ? undefined : u64(pod.majorPageFaults),
          psi: undefined,
        },
        network: undefined,
        process: undefined,
        containers,
        io: undefined,
      },
      windows: undefined,
    };
  }

  /** The pod cgroup's own totals (cgroupfs driver only: a systemd slice name is not a path). */
  private async podCgroupUsage(row: SandboxEntry, config: PodSandboxConfig): Promise<Usage | undefined> {
    if (this.ctx.cgroupDriver === "systemd") return undefined;
    const parent = podCgroupParent(config.linux?.cgroupParent, row.id, this.ctx.cgroupDriver);
    if (!parent || parent.endsWith(".slice")) return undefined;
    // A pod run before berth made pod cgroups has its sandbox's own leaf at /berth/<podId>.
    if (!config.linux?.cgroupParent && !(await this.sandboxNestedIn(row.id, parent))) return undefined;
    return readCgroupUsage(parent).catch(() => undefined);
  }

  private async sandboxNestedIn(id: string, parent: string): Promise<boolean> {
    return (this.ctx.bundles.tryReadSpec(id)?.linux.cgroupsPath ?? "").startsWith(`${parent}/`);
  }

  /** Without a readable pod cgroup: the sandbox process plus every container (sibling cgroups). */
  private async summedUsage(
    sandboxId: string,
    containers: ContainerStats[],
  ): Promise<Pick<Usage, "cpuNs" | "workingSet" | "usage"> & Partial<Usage>> {
    const sandbox = await this.taskUsage(sandboxId);
    let cpuNs = sandbox?.cpuNs ?? 0n;
    let workingSet = sandbox?.workingSet ?? 0n;
    let usage = sandbox?.usage ?? 0n;
    for (const c of containers) {
      cpuNs += c.cpu?.usageCoreNanoSeconds?.value ?? 0n;
      workingSet += c.memory?.workingSetBytes?.value ?? 0n;
      usage += c.memory?.usageBytes?.value ?? 0n;
    }
    return { cpuNs, workingSet, usage };
  }

  async pod(ref: string): Promise<PodSandboxStats> {
    return this.podStats(this.ctx.pods.resolve(ref));
  }

  async listPods(filter: PodSandboxStatsFilter | undefined): Promise<PodSandboxStats[]> {
    const rows = this.ctx.pods
      .list()
      .filter((r) => r.status.phase === "ready")
      .filter((r) => !filter?.id || r.id.startsWith(filter.id))
      .filter((r) => matchesLabels(r.config.labels, filter?.labelSelector));
    return Promise.all(rows.map((r) => this.podStats(r)));
  }
}
