// Container and pod resource usage for ContainerStats / PodSandboxStats: CPU and memory
// from the task's cgroup metrics (asked of the shim: cgroups v1 here, v2 where the host
// has it), swap where the cgroup accounts it, PSI (cpu, memory, io) where the unified
// hierarchy has pressure files, the writable layer's disk usage from the snapshotter. A
// pod's total is read from its pod cgroup, as containerd reads it, so it counts every process
// of the pod, exited containers' page cache included; its network from its namespace.
// Figures a host does not expose (swap without memsw accounting, PSI on pure v1) are unset.
import type {
  ContainerStats,
  ContainerStatsFilter,
  NetworkInterfaceUsage,
  NetworkUsage,
  PodSandboxStats,
  PodSandboxStatsFilter,
  PsiStats,
  SwapUsage,
} from "../gen/cri/runtime/v1/api.js";
import type { TaskStats } from "../runtime/index.js";
import { matchesLabels, nowNs } from "./context.js";
import { readCgroupUsage, type CgroupUsage } from "./pod-cgroup.js";
import type { ContainerEntry, SandboxEntry } from "./store/index.js";
import { swapFromStats, type Swap } from "./usage/cgroup-files.js";
import { defaultInterface, readNetDev, type InterfaceCounters } from "./usage/net-dev.js";
import type { Pressure } from "./usage/pressure.js";
import { UsageSources, type UsageDeps } from "./usage/sources.js";

const u64 = (value: bigint) => ({ value });

type Usage = CgroupUsage;

/** CPU and memory of a task's cgroup metrics (kubelet's working set: usage minus inactive file). */
export function usageOf(s: TaskStats | undefined): Usage | undefined {
  if (s?.v1) {
    const m = s.v1.memory;
    const usage = m?.usage?.usage ?? 0n;
    const inactive = m?.totalInactiveFile ?? 0n;
    return {
      cpuNs: s.v1.cpu?.usage?.total ?? 0n,
      workingSet: usage > inactive ? usage - inactive : 0n,
      usage,
      rss: m?.totalRss ?? 0n,
      pageFaults: m?.totalPgFault ?? 0n,
      majorPageFaults: m?.totalPgMajFault ?? 0n,
    };
  }
  if (s?.v2) {
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

/** The process count of a task's pids cgroup. */
export function processesOf(s: TaskStats | undefined): bigint | undefined {
  return s?.v1?.pids?.current ?? s?.v2?.pids?.current;
}

function swapUsage(ts: bigint, s: Swap | undefined): SwapUsage | undefined {
  return (
    s && {
      timestamp: ts,
      swapUsageBytes: u64(s.usage),
      swapAvailableBytes: s.available === undefined ? undefined : u64(s.available),
    }
  );
}

function interfaceUsage(i: InterfaceCounters): NetworkInterfaceUsage {
  return {
    name: i.name,
    rxBytes: u64(i.rxBytes),
    rxErrors: u64(i.rxErrors),
    txBytes: u64(i.txBytes),
    txErrors: u64(i.txErrors),
  };
}

/** The pod's network usage: every interface but loopback, eth0 as the default one. */
export function networkUsage(ts: bigint, ifaces: InterfaceCounters[]): NetworkUsage {
  const interfaces = ifaces.map(interfaceUsage);
  return { timestamp: ts, defaultInterface: defaultInterface(interfaces), interfaces };
}

function cpuMemory(ts: bigint, u: Partial<Usage> & Pick<Usage, "cpuNs" | "workingSet" | "usage">, psi: Pressure) {
  const opt = (v: bigint | undefined) => (v === undefined ? undefined : u64(v));
  return {
    cpu: { timestamp: ts, usageCoreNanoSeconds: u64(u.cpuNs), usageNanoCores: undefined, psi: psi.cpu },
    memory: {
      timestamp: ts,
      workingSetBytes: u64(u.workingSet),
      availableBytes: undefined,
      usageBytes: u64(u.usage),
      rssBytes: opt(u.rss),
      pageFaults: opt(u.pageFaults),
      majorPageFaults: opt(u.majorPageFaults),
      psi: psi.memory,
    },
  };
}

const ioUsage = (ts: bigint, psi: PsiStats | undefined) => (psi ? { timestamp: ts, psi } : undefined);

export type StatsDeps = UsageDeps;

export class StatsService {
  private readonly src: UsageSources;
  constructor(private readonly ctx: StatsDeps) {
    this.src = new UsageSources(ctx);
  }

  /** The container's stats, and its process count (which the pod's sums). */
  private async measure(row: ContainerEntry): Promise<{ stats: ContainerStats; processes: bigint }> {
    const config = row.config;
    const ts = nowNs();
    const task = await this.src.taskStats(row.id);
    const u = usageOf(task);
    const psi = task ? await this.src.containerPressure(row.id, task) : {};
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
    const cm = u ? cpuMemory(ts, u, psi) : undefined;
    const stats: ContainerStats = {
      attributes: { id: row.id, metadata: config.metadata, labels: config.labels, annotations: config.annotations },
      cpu: cm?.cpu,
      memory: cm?.memory,
      writableLayer: writable,
      swap: swapUsage(ts, swapFromStats(task)),
      io: ioUsage(ts, psi.io),
    };
    return { stats, processes: processesOf(task) ?? 0n };
  }

  async containerStats(row: ContainerEntry): Promise<ContainerStats> {
    return (await this.measure(row)).stats;
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
    const measured = await Promise.all(
      this.ctx.containers
        .bySandbox(row.id)
        .filter((c) => c.status.phase === "created")
        .map((c) => this.measure(c)),
    );
    const containers = measured.map((m) => m.stats);
    const path = this.src.podCgroupPath(row);
    const fromCgroup = path ? await readCgroupUsage(path).catch(() => undefined) : undefined;
    const pod = fromCgroup ?? (await this.summedUsage(row.id, containers));
    const psi = fromCgroup ? await this.src.podPressure(row) : {};
    const cm = cpuMemory(ts, pod, psi);
    return {
      attributes: { id: row.id, metadata: config.metadata, labels: config.labels, annotations: config.annotations },
      linux: {
        cpu: cm.cpu,
        memory: cm.memory,
        network: await this.network(row, ts),
        // As containerd counts it: the containers' processes (the sandbox's own not included).
        process: { timestamp: ts, processCount: u64(measured.reduce((n, m) => n + m.processes, 0n)) },
        containers,
        io: ioUsage(ts, psi.io),
      },
      windows: undefined,
    };
  }

  /** Read in the pod's namespace; a host-network pod's interfaces are the node's, not the pod's. */
  private async network(row: SandboxEntry, ts: bigint): Promise<NetworkUsage | undefined> {
    if (!row.info.netnsPath) return undefined;
    const pid = await this.src.pid(row.id);
    return pid > 0 ? networkUsage(ts, await readNetDev(pid)) : undefined;
  }

  /** Without a readable pod cgroup: the sandbox process plus every container (sibling cgroups). */
  private async summedUsage(
    sandboxId: string,
    containers: ContainerStats[],
  ): Promise<Pick<Usage, "cpuNs" | "workingSet" | "usage"> & Partial<Usage>> {
    const sandbox = usageOf(await this.src.taskStats(sandboxId));
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
