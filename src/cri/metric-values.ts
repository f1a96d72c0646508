// The translation of what berthd reads (a shim's cgroup metrics, the pod's /proc/net/dev
// counters, the container's OCI spec) into CRI metric values, as containerd 2.x fills them:
// a pure function per source, so each mapping is unit-tested on fixtures. CRI values are
// whole numbers: seconds are truncated.
import type { Spec } from "../oci/index.js";
import type { TaskStats } from "../runtime/index.js";
import type { MetricName } from "./metric-descriptors.js";
import { swapFromStats } from "./usage/cgroup-files.js";
import type { InterfaceCounters } from "./usage/net-dev.js";
import type { Pressure } from "./usage/pressure.js";

/** A metric value: its name, value and the label values after the base ones. */
export type Value = [name: MetricName, value: bigint, extra?: string[]];

const SEC = 1_000_000_000n;
const USEC = 1_000_000n;
const UNLIMITED = 1n << 62n;

/** A memory limit as cAdvisor exports it: 0 when unlimited. */
const limitOf = (v: bigint) => (v >= UNLIMITED ? 0n : v);

/** blkio's device label: the device node when known (cAdvisor's "/dev/vda"), else "MAJ:MIN". */
const deviceOf = (e: { device: string; major: bigint; minor: bigint }) => e.device || `${e.major}:${e.minor}`;

function v1Metrics(v1: NonNullable<TaskStats["v1"]>): Value[] {
  const out: Value[] = [];
  const u = v1.cpu?.usage;
  if (u) {
    out.push(
      ["container_cpu_usage_seconds_total", u.total / SEC],
      ["container_cpu_user_seconds_total", u.user / SEC],
      ["container_cpu_system_seconds_total", u.kernel / SEC],
    );
  }
  const t = v1.cpu?.throttling;
  if (t) {
    out.push(
      ["container_cpu_cfs_periods_total", t.periods],
      ["container_cpu_cfs_throttled_periods_total", t.throttledPeriods],
      ["container_cpu_cfs_throttled_seconds_total", t.throttledTime / SEC],
    );
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
      ["container_memory_total_active_file_bytes", mem.totalActiveFile],
      ["container_memory_total_inactive_file_bytes", mem.totalInactiveFile],
      ["container_memory_failures_total", mem.totalPgFault, ["pgfault", "container"]],
      ["container_memory_failures_total", mem.totalPgMajFault, ["pgmajfault", "container"]],
    );
    if (mem.kernel) out.push(["container_memory_kernel_usage", mem.kernel.usage]);
  }
  if (v1.memoryOomControl) out.push(["container_oom_events_total", v1.memoryOomControl.oomKill]);
  for (const e of v1.blkio?.ioServiceBytesRecursive ?? []) {
    const dev = deviceOf(e);
    out.push(["container_blkio_device_usage_total", e.value, [dev, String(e.major), String(e.minor), e.op]]);
    if (e.op.toLowerCase() === "read") out.push(["container_fs_reads_bytes_total", e.value, [dev]]);
    if (e.op.toLowerCase() === "write") out.push(["container_fs_writes_bytes_total", e.value, [dev]]);
  }
  for (const e of v1.blkio?.ioServicedRecursive ?? []) {
    if (e.op.toLowerCase() === "read") out.push(["container_fs_reads_total", e.value, [deviceOf(e)]]);
    if (e.op.toLowerCase() === "write") out.push(["container_fs_writes_total", e.value, [deviceOf(e)]]);
  }
  if (v1.pids) out.push(["container_processes", v1.pids.current], ["container_threads_max", v1.pids.limit]);
  return out;
}

function v2Metrics(v2: NonNullable<TaskStats["v2"]>): Value[] {
  const out: Value[] = [];
  const c = v2.cpu;
  if (c) {
    out.push(
      ["container_cpu_usage_seconds_total", c.usageUsec / USEC],
      ["container_cpu_user_seconds_total", c.userUsec / USEC],
      ["container_cpu_system_seconds_total", c.systemUsec / USEC],
      ["container_cpu_cfs_periods_total", c.nrPeriods],
      ["container_cpu_cfs_throttled_periods_total", c.nrThrottled],
      ["container_cpu_cfs_throttled_seconds_total", c.throttledUsec / USEC],
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
      ["container_memory_kernel_usage", mem.kernelStack + mem.slab],
      ["container_memory_total_active_file_bytes", mem.activeFile],
      ["container_memory_total_inactive_file_bytes", mem.inactiveFile],
      ["container_memory_failures_total", mem.pgfault, ["pgfault", "container"]],
      ["container_memory_failures_total", mem.pgmajfault, ["pgmajfault", "container"]],
    );
  }
  if (v2.memoryEvents) out.push(["container_oom_events_total", v2.memoryEvents.oomKill]);
  for (const e of v2.io?.usage ?? []) {
    const dev = [`${e.major}:${e.minor}`];
    out.push(
      ["container_fs_reads_bytes_total", e.rbytes, dev],
      ["container_fs_writes_bytes_total", e.wbytes, dev],
      ["container_fs_reads_total", e.rios, dev],
      ["container_fs_writes_total", e.wios, dev],
    );
  }
  if (v2.pids) out.push(["container_processes", v2.pids.current], ["container_threads_max", v2.pids.limit]);
  return out;
}

/** The metrics of a task's cgroup statistics (v1 from hybrid/legacy hosts, v2 from unified ones). */
export function cgroupMetrics(stats: TaskStats | undefined): Value[] {
  const out = stats?.v1 ? v1Metrics(stats.v1) : stats?.v2 ? v2Metrics(stats.v2) : [];
  const swap = swapFromStats(stats);
  if (swap) out.push(["container_memory_swap", swap.usage]);
  return out;
}

/** The container's resources and soft rlimits, as its OCI spec (kept current by updates) sets them. */
export function specMetrics(spec: Spec | undefined): Value[] {
  const out: Value[] = [];
  const r = spec?.linux?.resources;
  const n = (v: number | undefined) => (v === undefined ? undefined : BigInt(Math.trunc(v)));
  const push = (name: MetricName, v: bigint | undefined) => {
    if (v !== undefined) out.push([name, v]);
  };
  push("container_spec_cpu_period", n(r?.cpu?.period));
  const quota = n(r?.cpu?.quota);
  if (quota !== undefined && quota > 0n) push("container_spec_cpu_quota", quota);
  push("container_spec_cpu_shares", n(r?.cpu?.shares));
  // -1 (unlimited) is exported as 0, as cAdvisor exports an unlimited limit
  const mem = (v: number | undefined) => (v === undefined ? undefined : v < 0 ? 0n : limitOf(BigInt(Math.trunc(v))));
  push("container_spec_memory_limit_bytes", mem(r?.memory?.limit));
  push("container_spec_memory_reservation_limit_bytes", mem(r?.memory?.reservation));
  push("container_spec_memory_swap_limit_bytes", mem(r?.memory?.swap));
  for (const l of spec?.process?.rlimits ?? []) {
    out.push(["container_ulimits_soft", BigInt(Math.trunc(l.soft)), [l.type]]);
  }
  return out;
}

/** The eight counters of each interface of the pod's network namespace. */
export function networkMetrics(ifaces: InterfaceCounters[]): Value[] {
  return ifaces.flatMap((i): Value[] => {
    const l = [i.name];
    return [
      ["container_network_receive_bytes_total", i.rxBytes, l],
      ["container_network_receive_packets_total", i.rxPackets, l],
      ["container_network_receive_packets_dropped_total", i.rxDropped, l],
      ["container_network_receive_errors_total", i.rxErrors, l],
      ["container_network_transmit_bytes_total", i.txBytes, l],
      ["container_network_transmit_packets_total", i.txPackets, l],
      ["container_network_transmit_packets_dropped_total", i.txDropped, l],
      ["container_network_transmit_errors_total", i.txErrors, l],
    ];
  });
}

/** PSI as cAdvisor's counters: "some" is time waiting, "full" time stalled (CRI totals are ns). */
export function pressureMetrics(p: Pressure): Value[] {
  const out: Value[] = [];
  for (const r of ["cpu", "memory", "io"] as const) {
    const some = p[r]?.Some;
    const full = p[r]?.Full;
    if (some) out.push([`container_pressure_${r}_waiting_seconds_total`, some.Total / SEC]);
    if (full) out.push([`container_pressure_${r}_stalled_seconds_total`, full.Total / SEC]);
  }
  return out;
}
