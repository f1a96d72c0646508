// CRI metrics (ListMetricDescriptors, ListPodSandboxMetrics): the cAdvisor-named container
// metrics kubelet exposes when it takes pod and container stats from the runtime
// (PodAndContainerStatsFromCRI). Values come from the task's cgroup metrics (asked of the
// shim, as ContainerStats does), the container's processes under /proc, the snapshotter's
// usage of the writable layer, and the pod's network namespace (/proc/<sandbox pid>/net/dev).
// Every metric carries the labels id, name and image (of the container, or of the pod for
// the pod-level network metrics) and the extra labels its descriptor names, in that order.
// CRI values are whole numbers: seconds are truncated, as CRI-O reports them.
import { readdir, readFile, readlink, statfs } from "node:fs/promises";
import { join } from "node:path";
import {
  ContainerConfig,
  MetricType,
  PodSandboxConfig,
  type ContainerMetrics,
  type Metric,
  type MetricDescriptor,
  type PodSandboxMetrics,
} from "../gen/cri/runtime/v1/api.js";
import type { ContainerRow } from "../metadata/containers.js";
import type { PodRow } from "../metadata/pods.js";
import type { TaskStats } from "../runtime/index.js";
import { CRI_NAMESPACE as NS, type CriContext, nowNs } from "./context.js";

const { COUNTER, GAUGE } = MetricType;
const BASE_LABELS = ["id", "name", "image"];

interface Def {
  help: string;
  type: MetricType;
  /** labels after id, name, image */
  labels?: string[];
}

const DEFS: Record<string, Def> = {
  container_blkio_device_usage_total: {
    help: "Blkio device bytes usage",
    type: COUNTER,
    labels: ["device", "major", "minor", "operation"],
  },
  container_cpu_cfs_periods_total: { help: "Number of elapsed enforcement period intervals.", type: COUNTER },
  container_cpu_cfs_throttled_periods_total: { help: "Number of throttled period intervals.", type: COUNTER },
  container_cpu_cfs_throttled_seconds_total: {
    help: "Total time duration the container has been throttled.",
    type: COUNTER,
  },
  container_cpu_system_seconds_total: { help: "Cumulative system cpu time consumed in seconds.", type: COUNTER },
  container_cpu_usage_seconds_total: {
    help: "Cumulative cpu time consumed in seconds.",
    type: COUNTER,
    labels: ["cpu"],
  },
  container_cpu_user_seconds_total: { help: "Cumulative user cpu time consumed in seconds.", type: COUNTER },
  container_file_descriptors: { help: "Number of open file descriptors for the container.", type: GAUGE },
  container_fs_inodes_free: { help: "Number of available Inodes", type: GAUGE, labels: ["device"] },
  container_fs_inodes_total: { help: "Number of Inodes", type: GAUGE, labels: ["device"] },
  container_fs_limit_bytes: {
    help: "Number of bytes that can be consumed by the container on this filesystem.",
    type: GAUGE,
    labels: ["device"],
  },
  container_fs_reads_bytes_total: { help: "Cumulative count of bytes read", type: COUNTER, labels: ["device"] },
  container_fs_reads_total: { help: "Cumulative count of reads completed", type: COUNTER, labels: ["device"] },
  container_fs_usage_bytes: {
    help: "Number of bytes that are consumed by the container on this filesystem.",
    type: GAUGE,
    labels: ["device"],
  },
  container_fs_writes_bytes_total: { help: "Cumulative count of bytes written", type: COUNTER, labels: ["device"] },
  container_fs_writes_total: { help: "Cumulative count of writes completed", type: COUNTER, labels: ["device"] },
  container_last_seen: { help: "Last time a container was seen by the exporter", type: GAUGE },
  container_memory_cache: { help: "Number of bytes of page cache memory.", type: GAUGE },
  container_memory_failcnt: { help: "Number of memory usage hits limits", type: COUNTER },
  container_memory_failures_total: {
    help: "Cumulative count of memory allocation failures.",
    type: COUNTER,
    labels: ["failure_type", "scope"],
  },
  container_memory_kernel_usage: { help: "Size of kernel memory allocated in bytes.", type: GAUGE },
  container_memory_mapped_file: { help: "Size of memory mapped files in bytes.", type: GAUGE },
  container_memory_max_usage_bytes: { help: "Maximum memory usage recorded in bytes", type: GAUGE },
  container_memory_rss: { help: "Size of RSS in bytes.", type: GAUGE },
  container_memory_swap: { help: "Container swap usage in bytes.", type: GAUGE },
  container_memory_usage_bytes: {
    help: "Current memory usage in bytes, including all memory regardless of when it was accessed",
    type: GAUGE,
  },
  container_memory_working_set_bytes: { help: "Current working set in bytes.", type: GAUGE },
  container_network_receive_bytes_total: {
    help: "Cumulative count of bytes received",
    type: COUNTER,
    labels: ["interface"],
  },
  container_network_receive_errors_total: {
    help: "Cumulative count of errors encountered while receiving",
    type: COUNTER,
    labels: ["interface"],
  },
  container_network_receive_packets_dropped_total: {
    help: "Cumulative count of packets dropped while receiving",
    type: COUNTER,
    labels: ["interface"],
  },
  container_network_receive_packets_total: {
    help: "Cumulative count of packets received",
    type: COUNTER,
    labels: ["interface"],
  },
  container_network_transmit_bytes_total: {
    help: "Cumulative count of bytes transmitted",
    type: COUNTER,
    labels: ["interface"],
  },
  container_network_transmit_errors_total: {
    help: "Cumulative count of errors encountered while transmitting",
    type: COUNTER,
    labels: ["interface"],
  },
  container_network_transmit_packets_dropped_total: {
    help: "Cumulative count of packets dropped while transmitting",
    type: COUNTER,
    labels: ["interface"],
  },
  container_network_transmit_packets_total: {
    help: "Cumulative count of packets transmitted",
    type: COUNTER,
    labels: ["interface"],
  },
  container_oom_events_total: { help: "Count of out of memory events observed for the container", type: COUNTER },
  container_processes: { help: "Number of processes running inside the container.", type: GAUGE },
  container_sockets: { help: "Number of open sockets for the container.", type: GAUGE },
  container_spec_cpu_period: { help: "CPU period of the container.", type: GAUGE },
  container_spec_cpu_shares: { help: "CPU share of the container.", type: GAUGE },
  container_spec_memory_limit_bytes: { help: "Memory limit for the container.", type: GAUGE },
  container_spec_memory_swap_limit_bytes: { help: "Memory swap limit for the container.", type: GAUGE },
  container_start_time_seconds: { help: "Start time of the container since unix epoch in seconds.", type: GAUGE },
  container_threads: { help: "Number of threads running inside the container", type: GAUGE },
  container_threads_max: {
    help: "Maximum number of threads allowed inside the container, 0 if unlimited",
    type: GAUGE,
  },
};

export function metricDescriptors(): MetricDescriptor[] {
  return Object.entries(DEFS).map(([name, d]) => ({
    name,
    help: d.help,
    labelKeys: [...BASE_LABELS, ...(d.labels ?? [])],
  }));
}

const SEC = 1_000_000_000n;

/** Collects metrics for one subject (a container or a pod) with its base label values. */
class Sink {
  readonly metrics: Metric[] = [];
  constructor(
    private readonly base: string[],
    private readonly timestamp: bigint,
  ) {}
  add(name: keyof typeof DEFS, value: bigint | number | undefined, extra: string[] = []): void {
    if (value === undefined) return;
    const v = BigInt(value);
    this.metrics.push({
      name,
      timestamp: this.timestamp,
      metricType: DEFS[name].type,
      labelValues: [...this.base, ...extra],
      value: { value: v < 0n ? 0n : v },
    });
  }
}

async function text(path: string): Promise<string | undefined> {
  return readFile(path, "utf8").catch(() => undefined);
}

/** The directory of `pid`'s cgroup in a v1 controller's hierarchy, or its unified (v2) one. */
async function cgroupDir(pid: number, controller: string): Promise<string | undefined> {
  const lines = (await text(`/proc/${pid}/cgroup`))?.split("\n") ?? [];
  for (const line of lines) {
    const [, ctrls, path] = line.split(":");
    if (ctrls?.split(",").includes(controller)) {
      return join("/sys/fs/cgroup", ctrls.replace(/^name=/, ""), path);
    }
  }
  const unified = lines.find((l) => l.startsWith("0::"));
  return unified ? join("/sys/fs/cgroup", unified.slice(3)) : undefined;
}

async function readNum(path: string): Promise<bigint | undefined> {
  const t = (await text(path))?.trim();
  return t && /^\d+$/.test(t) ? BigInt(t) : undefined;
}

/** Threads, open descriptors and sockets of every process in `pid`'s pids cgroup. */
async function processCounts(pid: number): Promise<{ threads: number; fds: number; sockets: number }> {
  const dir = await cgroupDir(pid, "pids");
  const procs = ((dir && (await text(join(dir, "cgroup.procs")))) || String(pid)).split("\n").filter(Boolean);
  let threads = 0;
  let fds = 0;
  let sockets = 0;
  for (const p of procs) {
    const status = await text(`/proc/${p}/status`);
    threads += Number(/^Threads:\s+(\d+)/m.exec(status ?? "")?.[1] ?? 0);
    const entries = await readdir(`/proc/${p}/fd`).catch(() => [] as string[]);
    fds += entries.length;
    for (const e of entries) {
      if ((await readlink(`/proc/${p}/fd/${e}`).catch(() => "")).startsWith("socket:")) sockets++;
    }
  }
  return { threads, fds, sockets };
}

/** Per-interface counters of /proc/<pid>/net/dev (the pod's network namespace), loopback left out. */
async function netDev(pid: number): Promise<{ name: string; v: bigint[] }[]> {
  const out: { name: string; v: bigint[] }[] = [];
  for (const line of ((await text(`/proc/${pid}/net/dev`)) ?? "").split("\n").slice(2)) {
    const at = line.indexOf(":");
    if (at < 0) continue;
    const name = line.slice(0, at).trim();
    const v = line
      .slice(at + 1)
      .trim()
      .split(/\s+/)
      .map((x) => BigInt(x));
    if (name !== "lo" && v.length >= 12) out.push({ name, v });
  }
  return out;
}

type Value = [name: string, value: bigint, extra?: string[]];

/** The metrics of a task's cgroup statistics (v1 from hybrid/legacy hosts, v2 from unified ones). */
export function cgroupMetrics(stats: TaskStats | undefined): Value[] {
  const out: Value[] = [];
  const v1 = stats?.v1;
  const v2 = stats?.v2;
  if (v1) {
    const u = v1.cpu?.usage;
    if (u) {
      out.push(["container_cpu_usage_seconds_total", u.total / SEC, ["total"]]);
      out.push(
        ["container_cpu_user_seconds_total", u.user / SEC],
        ["container_cpu_system_seconds_total", u.kernel / SEC],
      );
    }
    const t = v1.cpu?.throttling;
    if (t) {
      out.push(["container_cpu_cfs_periods_total", t.periods]);
      out.push(["container_cpu_cfs_throttled_periods_total", t.throttledPeriods]);
      out.push(["container_cpu_cfs_throttled_seconds_total", t.throttledTime / SEC]);
    }
    const mem = v1.memory;
    if (mem?.usage) {
      const usage = mem.usage.usage;
      out.push(
        ["container_memory_usage_bytes", usage],
        ["container_memory_max_usage_bytes", mem.usage.max],
        ["container_memory_failcnt", mem.usage.failcnt],
        ["container_memory_working_set_bytes", usage - mem.totalInactiveFile],
        ["container_memory_cache", mem.totalCache],
        ["container_memory_rss", mem.totalRss],
        ["container_memory_mapped_file", mem.totalMappedFile],
        // memsw counts memory and swap together
        ["container_memory_swap", mem.swap ? mem.swap.usage - usage : 0n],
        ["container_memory_kernel_usage", mem.kernel?.usage ?? 0n],
        ["container_memory_failures_total", mem.totalPgFault, ["pgfault", "container"]],
        ["container_memory_failures_total", mem.totalPgMajFault, ["pgmajfault", "container"]],
        ["container_spec_memory_limit_bytes", mem.usage.limit],
        ["container_spec_memory_swap_limit_bytes", mem.swap?.limit ?? 0n],
      );
    }
    out.push(["container_oom_events_total", v1.memoryOomControl?.oomKill ?? 0n]);
    for (const e of v1.blkio?.ioServiceBytesRecursive ?? []) {
      out.push(["container_blkio_device_usage_total", e.value, [e.device, String(e.major), String(e.minor), e.op]]);
    }
    if (v1.pids) out.push(["container_processes", v1.pids.current], ["container_threads_max", v1.pids.limit]);
  } else if (v2) {
    const usec = 1_000_000n;
    const c = v2.cpu;
    if (c) {
      out.push(
        ["container_cpu_usage_seconds_total", c.usageUsec / usec, ["total"]],
        ["container_cpu_user_seconds_total", c.userUsec / usec],
        ["container_cpu_system_seconds_total", c.systemUsec / usec],
        ["container_cpu_cfs_periods_total", c.nrPeriods],
        ["container_cpu_cfs_throttled_periods_total", c.nrThrottled],
        ["container_cpu_cfs_throttled_seconds_total", c.throttledUsec / usec],
      );
    }
    const mem = v2.memory;
    if (mem) {
      out.push(
        ["container_memory_usage_bytes", mem.usage],
        ["container_memory_max_usage_bytes", mem.maxUsage],
        // v2 has no failcnt: the count of hits of memory.max, as cAdvisor reads it
        ["container_memory_failcnt", v2.memoryEvents?.max ?? 0n],
        ["container_memory_working_set_bytes", mem.usage - mem.inactiveFile],
        ["container_memory_cache", mem.file],
        ["container_memory_rss", mem.anon],
        ["container_memory_mapped_file", mem.fileMapped],
        ["container_memory_swap", mem.swapUsage],
        ["container_memory_kernel_usage", mem.kernelStack + mem.slab],
        ["container_memory_failures_total", mem.pgfault, ["pgfault", "container"]],
        ["container_memory_failures_total", mem.pgmajfault, ["pgmajfault", "container"]],
        ["container_spec_memory_limit_bytes", mem.usageLimit],
        ["container_spec_memory_swap_limit_bytes", mem.swapLimit],
      );
    }
    out.push(["container_oom_events_total", v2.memoryEvents?.oomKill ?? 0n]);
    if (v2.pids) out.push(["container_processes", v2.pids.current], ["container_threads_max", v2.pids.limit]);
  }
  return out;
}

/** CFS period and CPU shares of `pid`'s cgroup (v2: cpu.max's period, cpu.weight as shares). */
async function cpuSpec(pid: number): Promise<{ period?: bigint; shares?: bigint }> {
  const dir = await cgroupDir(pid, "cpu");
  if (!dir) return {};
  const period = await readNum(join(dir, "cpu.cfs_period_us"));
  if (period !== undefined) return { period, shares: await readNum(join(dir, "cpu.shares")) };
  const max = (await text(join(dir, "cpu.max")))?.trim().split(/\s+/)[1];
  const weight = await readNum(join(dir, "cpu.weight"));
  return {
    period: max && /^\d+$/.test(max) ? BigInt(max) : undefined,
    // the inverse of the shares -> weight conversion runc and kubelet use
    shares: weight === undefined ? undefined : 2n + ((weight - 1n) * 262142n) / 9999n,
  };
}

export class MetricsService {
  constructor(private readonly ctx: CriContext) {}

  private async pid(id: string): Promise<number> {
    if (!this.ctx.shims.has(NS, id)) return 0;
    const s = await this.ctx.shims.state(NS, id).catch(() => undefined);
    return s?.status === "running" ? s.pid : 0;
  }

  private async container(row: ContainerRow, ts: bigint): Promise<ContainerMetrics> {
    const config = ContainerConfig.decode(row.config);
    const m = new Sink([row.id, config.metadata?.name ?? row.name, row.imageRef], ts);
    const stats = this.ctx.shims.has(NS, row.id)
      ? await this.ctx.shims.stats(NS, row.id).catch(() => undefined)
      : undefined;
    for (const [name, value, extra] of cgroupMetrics(stats)) m.add(name, value, extra);

    const pid = await this.pid(row.id);
    if (pid > 0) {
      const spec = await cpuSpec(pid);
      m.add("container_spec_cpu_period", spec.period);
      m.add("container_spec_cpu_shares", spec.shares);
      const counts = await processCounts(pid);
      m.add("container_threads", counts.threads);
      m.add("container_file_descriptors", counts.fds);
      m.add("container_sockets", counts.sockets);
    }

    const root = this.ctx.images.opts.root;
    const du = await this.ctx.images.snapshotter.usage(row.id).catch(() => undefined);
    if (du) m.add("container_fs_usage_bytes", du.size, [root]);
    const fs = await statfs(root).catch(() => undefined);
    if (fs) {
      m.add("container_fs_limit_bytes", fs.blocks * fs.bsize, [root]);
      m.add("container_fs_inodes_total", fs.files, [root]);
      m.add("container_fs_inodes_free", fs.ffree, [root]);
    }
    if (row.startedAt > 0n) m.add("container_start_time_seconds", row.startedAt / SEC);
    m.add("container_last_seen", ts / SEC);
    return { containerId: row.id, metrics: m.metrics };
  }

  private async pod(row: PodRow, ts: bigint): Promise<PodSandboxMetrics> {
    const config = PodSandboxConfig.decode(row.config);
    const m = new Sink([row.id, config.metadata?.name ?? row.name, ""], ts);
    const pid = await this.pid(row.id);
    // A host-network pod's interfaces are the node's: not the pod's to report.
    if (pid > 0 && row.netnsPath) {
      for (const { name, v } of await netDev(pid)) {
        m.add("container_network_receive_bytes_total", v[0], [name]);
        m.add("container_network_receive_packets_total", v[1], [name]);
        m.add("container_network_receive_errors_total", v[2], [name]);
        m.add("container_network_receive_packets_dropped_total", v[3], [name]);
        m.add("container_network_transmit_bytes_total", v[8], [name]);
        m.add("container_network_transmit_packets_total", v[9], [name]);
        m.add("container_network_transmit_errors_total", v[10], [name]);
        m.add("container_network_transmit_packets_dropped_total", v[11], [name]);
      }
    }
    const containers = this.ctx.containers.bySandbox(row.id).filter((c) => c.phase === "created");
    return {
      podSandboxId: row.id,
      metrics: m.metrics,
      containerMetrics: await Promise.all(containers.map((c) => this.container(c, ts))),
    };
  }

  async listPodSandboxMetrics(): Promise<PodSandboxMetrics[]> {
    const ts = nowNs();
    const pods = this.ctx.pods.list().filter((r) => r.phase === "ready");
    return Promise.all(pods.map((p) => this.pod(p, ts)));
  }
}
