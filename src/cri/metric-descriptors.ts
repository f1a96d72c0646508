// The metrics ListMetricDescriptors announces and ListPodSandboxMetrics fills: the container
// metrics of cAdvisor's endpoint (kubelet's /metrics/cadvisor), which kubelet serves from
// the runtime instead when PodAndContainerStatsFromCRI is on. Names, types and label keys are
// containerd 2.x's (its list_metric_descriptors.go): every metric is labelled pod, namespace,
// container, id, image, then the extra keys it names. Beyond containerd's list: cAdvisor's
// PSI counters and container_spec_cpu_quota, which critest expects once a runtime has them. A pod's own (network and cgroup)
// metrics carry an empty container and image, as cAdvisor's pod cgroup does.
import { MetricType, type MetricDescriptor } from "../gen/cri/runtime/v1/api.js";

const { COUNTER, GAUGE } = MetricType;
export const BASE_LABELS = ["pod", "namespace", "container", "id", "image"] as const;

interface Def {
  help: string;
  type: MetricType;
  /** labels after the base ones */
  labels?: readonly string[];
}

const NET = ["interface"];
const DISK = ["device"];
const counter = (help: string, labels?: readonly string[]): Def => ({ help, type: COUNTER, labels });
const gauge = (help: string, labels?: readonly string[]): Def => ({ help, type: GAUGE, labels });

export const METRICS = {
  // CPU
  container_cpu_user_seconds_total: counter("Cumulative user CPU time consumed in seconds."),
  container_cpu_system_seconds_total: counter("Cumulative system CPU time consumed in seconds."),
  container_cpu_usage_seconds_total: counter("Cumulative CPU time consumed in seconds."),
  container_cpu_cfs_periods_total: counter("Number of elapsed enforcement period intervals."),
  container_cpu_cfs_throttled_periods_total: counter("Number of throttled period intervals."),
  container_cpu_cfs_throttled_seconds_total: counter("Total time duration the container has been throttled."),
  // memory
  container_memory_cache: gauge("Number of bytes of page cache memory."),
  container_memory_rss: gauge("Size of RSS (anonymous and swap cache memory) in bytes."),
  container_memory_kernel_usage: gauge("Size of kernel memory allocated in bytes."),
  container_memory_mapped_file: gauge("Size of memory mapped files in bytes."),
  container_memory_swap: gauge("Container swap usage in bytes."),
  container_memory_failcnt: counter("Number of memory usage hits limits."),
  container_memory_usage_bytes: gauge(
    "Current memory usage in bytes, including all memory regardless of when it was accessed.",
  ),
  container_memory_max_usage_bytes: gauge("Maximum memory usage recorded in bytes."),
  container_memory_working_set_bytes: gauge("Current working set in bytes (usage minus inactive file cache)."),
  container_memory_total_active_file_bytes: gauge("Active file cache memory in bytes."),
  container_memory_total_inactive_file_bytes: gauge("Inactive file cache memory in bytes."),
  container_memory_failures_total: counter("Cumulative count of memory allocation failures.", [
    "failure_type",
    "scope",
  ]),
  container_oom_events_total: counter("Count of out of memory events observed for the container."),
  // pressure stall information (cAdvisor's names; PSI "some" is waiting, "full" is stalled)
  container_pressure_cpu_waiting_seconds_total: counter("Total time tasks in the container waited for CPU."),
  container_pressure_cpu_stalled_seconds_total: counter(
    "Total time no task in the container could run for want of CPU.",
  ),
  container_pressure_memory_waiting_seconds_total: counter("Total time tasks in the container waited for memory."),
  container_pressure_memory_stalled_seconds_total: counter(
    "Total time no task in the container could run for want of memory.",
  ),
  container_pressure_io_waiting_seconds_total: counter("Total time tasks in the container waited for I/O."),
  container_pressure_io_stalled_seconds_total: counter(
    "Total time no task in the container could run for want of I/O.",
  ),
  // network (of the pod's namespace)
  container_network_receive_bytes_total: counter("Cumulative count of bytes received.", NET),
  container_network_receive_packets_total: counter("Cumulative count of packets received.", NET),
  container_network_receive_packets_dropped_total: counter("Cumulative count of packets dropped while receiving.", NET),
  container_network_receive_errors_total: counter("Cumulative count of errors encountered while receiving.", NET),
  container_network_transmit_bytes_total: counter("Cumulative count of bytes transmitted.", NET),
  container_network_transmit_packets_total: counter("Cumulative count of packets transmitted.", NET),
  container_network_transmit_packets_dropped_total: counter(
    "Cumulative count of packets dropped while transmitting.",
    NET,
  ),
  container_network_transmit_errors_total: counter("Cumulative count of errors encountered while transmitting.", NET),
  // filesystem (the writable layer on the filesystem holding it)
  container_fs_inodes_free: gauge("Number of available inodes.", DISK),
  container_fs_inodes_total: gauge("Number of inodes.", DISK),
  container_fs_limit_bytes: gauge("Number of bytes that can be consumed by the container on this filesystem.", DISK),
  container_fs_usage_bytes: gauge("Number of bytes that are consumed by the container on this filesystem.", DISK),
  // disk I/O (the blkio controller)
  container_fs_reads_bytes_total: counter("Cumulative count of bytes read.", DISK),
  container_fs_reads_total: counter("Cumulative count of reads completed.", DISK),
  container_fs_writes_bytes_total: counter("Cumulative count of bytes written.", DISK),
  container_fs_writes_total: counter("Cumulative count of writes completed.", DISK),
  container_blkio_device_usage_total: counter("Blkio device bytes usage.", [...DISK, "major", "minor", "operation"]),
  // processes
  container_processes: gauge("Number of processes running inside the container."),
  container_file_descriptors: gauge("Number of open file descriptors for the container."),
  container_sockets: gauge("Number of open sockets for the container."),
  container_threads_max: gauge("Maximum number of threads allowed inside the container, 0 if unlimited."),
  container_threads: gauge("Number of threads running inside the container."),
  container_ulimits_soft: gauge("Soft ulimit values of the container's first process.", ["ulimit"]),
  // miscellaneous
  container_last_seen: gauge("Last time a container was seen by the exporter."),
  container_start_time_seconds: gauge("Start time of the container since unix epoch in seconds."),
  // the container's resources
  container_spec_cpu_period: gauge("CPU period of the container."),
  container_spec_cpu_quota: gauge("CPU quota of the container."),
  container_spec_cpu_shares: gauge("CPU share of the container."),
  container_spec_memory_limit_bytes: gauge("Memory limit for the container."),
  container_spec_memory_reservation_limit_bytes: gauge("Memory reservation limit for the container."),
  container_spec_memory_swap_limit_bytes: gauge("Memory swap limit for the container."),
} satisfies Record<string, Def>;

export type MetricName = keyof typeof METRICS;

export function metricType(name: MetricName): MetricType {
  return METRICS[name].type;
}

/** The label keys of `name`: the base ones, then its own. */
export function labelKeys(name: MetricName): string[] {
  const d: Def = METRICS[name];
  return [...BASE_LABELS, ...(d.labels ?? [])];
}

export function metricDescriptors(): MetricDescriptor[] {
  return (Object.keys(METRICS) as MetricName[]).map((name) => ({
    name,
    help: METRICS[name].help,
    labelKeys: labelKeys(name),
  }));
}
