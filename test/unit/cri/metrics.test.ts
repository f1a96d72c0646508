// Unit tests of the CRI stats and metrics translation: kernel file texts (fixtures/usage.ts)
// and shim cgroup metrics -> CRI values, names and labels as containerd 2.x reports them.
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { Metrics as V1Metrics } from "../../../src/gen/cgroups/stats/v1/metrics.js";
import { Metrics as V2Metrics } from "../../../src/gen/cgroups/stats/v2/metrics.js";
import { MetricType } from "../../../src/gen/cri/runtime/v1/api.js";
import { labelKeys, metricDescriptors, METRICS, type MetricName } from "../../../src/cri/metric-descriptors.js";
import {
  cgroupMetrics,
  networkMetrics,
  pressureMetrics,
  specMetrics,
  type Value,
} from "../../../src/cri/metric-values.js";
import { cgroupMounts } from "../../../src/cri/pod-cgroup.js";
import { networkUsage, processesOf, usageOf } from "../../../src/cri/stats.js";
import { cgroupDirs, readCgroupSwap, swapFromStats } from "../../../src/cri/usage/cgroup-files.js";
import { parseNetDev } from "../../../src/cri/usage/net-dev.js";
import { parsePressure, psiFromV2, readPressure } from "../../../src/cri/usage/pressure.js";
import { threadsOf } from "../../../src/cri/usage/processes.js";
import { CPU_PRESSURE, MOUNTINFO_HYBRID, NET_DEV, PROC_CGROUP_HYBRID, PROC_STATUS } from "./fixtures/usage.js";

const GiB = 1n << 30n;
const keyed = (vs: Value[]) => Object.fromEntries(vs.map(([n, v, e]) => [`${n}${e ? `{${e.join(",")}}` : ""}`, v]));

test("descriptors: containerd's names, label keys and types", () => {
  const ds = metricDescriptors();
  assert.equal(new Set(ds.map((d) => d.name)).size, ds.length, "no name twice");
  for (const d of ds) {
    assert.ok(d.help.length > 0, d.name);
    assert.deepEqual(d.labelKeys.slice(0, 5), ["pod", "namespace", "container", "id", "image"], d.name);
    // counters end in _total, with failcnt (a counter in cAdvisor too); inodes_total is a count of inodes
    const counter =
      (d.name.endsWith("_total") && d.name !== "container_fs_inodes_total") || d.name === "container_memory_failcnt";
    assert.equal(METRICS[d.name as MetricName].type, counter ? MetricType.COUNTER : MetricType.GAUGE, d.name);
  }
  assert.deepEqual(labelKeys("container_network_receive_bytes_total").slice(5), ["interface"]);
  assert.deepEqual(labelKeys("container_fs_writes_bytes_total").slice(5), ["device"]);
  assert.deepEqual(labelKeys("container_blkio_device_usage_total").slice(5), ["device", "major", "minor", "operation"]);
  assert.deepEqual(labelKeys("container_memory_failures_total").slice(5), ["failure_type", "scope"]);
  assert.deepEqual(labelKeys("container_ulimits_soft").slice(5), ["ulimit"]);
  for (const name of [
    "container_cpu_usage_seconds_total",
    "container_memory_working_set_bytes",
    "container_network_receive_bytes_total",
    "container_fs_usage_bytes",
    "container_processes",
    "container_threads",
  ])
    assert.ok(
      ds.some((d) => d.name === name),
      name,
    );
});

test("cgroup v1 and v2 statistics give the same metrics, in the units cAdvisor names", () => {
  const v1 = cgroupMetrics({
    typeUrl: "io.containerd.cgroups.v1.Metrics",
    raw: undefined,
    v1: V1Metrics.fromPartial({
      cpu: {
        usage: { total: 7_500_000_000n, user: 5_000_000_000n, kernel: 2_000_000_000n },
        throttling: { periods: 10n, throttledPeriods: 3n, throttledTime: 4_000_000_000n },
      },
      memory: {
        usage: { usage: 300n, max: 400n, failcnt: 2n, limit: GiB },
        // memsw counts memory and swap together: 50 bytes of swap, a 1 GiB swap limit
        swap: { usage: 350n, limit: 2n * GiB },
        totalInactiveFile: 100n,
        totalActiveFile: 20n,
        totalCache: 120n,
        totalRss: 150n,
        totalPgFault: 9n,
        totalPgMajFault: 1n,
      },
      memoryOomControl: { oomKill: 1n },
      pids: { current: 4n, limit: 100n },
    }),
  });
  const v2 = cgroupMetrics({
    typeUrl: "io.containerd.cgroups.v2.Metrics",
    raw: undefined,
    v2: V2Metrics.fromPartial({
      cpu: {
        usageUsec: 7_500_000n,
        userUsec: 5_000_000n,
        systemUsec: 2_000_000n,
        nrPeriods: 10n,
        nrThrottled: 3n,
        throttledUsec: 4_000_000n,
      },
      memory: {
        usage: 300n,
        maxUsage: 400n,
        usageLimit: GiB,
        swapUsage: 50n,
        swapLimit: GiB,
        inactiveFile: 100n,
        activeFile: 20n,
        file: 120n,
        anon: 150n,
        pgfault: 9n,
        pgmajfault: 1n,
      },
      memoryEvents: { max: 2n, oomKill: 1n },
      pids: { current: 4n, limit: 100n },
    }),
  });
  const want = {
    container_cpu_usage_seconds_total: 7n,
    container_cpu_user_seconds_total: 5n,
    container_cpu_system_seconds_total: 2n,
    container_cpu_cfs_periods_total: 10n,
    container_cpu_cfs_throttled_periods_total: 3n,
    container_cpu_cfs_throttled_seconds_total: 4n,
    container_memory_usage_bytes: 300n,
    container_memory_max_usage_bytes: 400n,
    container_memory_failcnt: 2n,
    container_memory_working_set_bytes: 200n,
    container_memory_cache: 120n,
    container_memory_rss: 150n,
    container_memory_mapped_file: 0n,
    container_memory_total_active_file_bytes: 20n,
    container_memory_total_inactive_file_bytes: 100n,
    container_memory_swap: 50n,
    "container_memory_failures_total{pgfault,container}": 9n,
    "container_memory_failures_total{pgmajfault,container}": 1n,
    container_oom_events_total: 1n,
    container_processes: 4n,
    container_threads_max: 100n,
  };
  const pick = (vs: Value[]) => {
    const k = keyed(vs);
    delete k.container_memory_kernel_usage;
    return k;
  };
  assert.deepEqual(pick(v1), want);
  assert.deepEqual(pick(v2), want);
  const names = new Set(metricDescriptors().map((d) => d.name));
  for (const [n] of [...v1, ...v2]) assert.ok(names.has(n), `${n} has a descriptor`);
});

test("blkio (v1 throttle counters) and io.stat (v2) give the filesystem I/O metrics per device", () => {
  const entry = (op: string, value: bigint) => ({ device: "/dev/vda", major: 254n, minor: 0n, op, value });
  const v1 = keyed(
    cgroupMetrics({
      typeUrl: "",
      raw: undefined,
      v1: V1Metrics.fromPartial({
        blkio: {
          ioServiceBytesRecursive: [entry("Read", 4096n), entry("Write", 4194304n), entry("Total", 4198400n)],
          ioServicedRecursive: [entry("Read", 1n), entry("Write", 4n), entry("Total", 5n)],
        },
      }),
    }),
  );
  assert.equal(v1["container_fs_writes_bytes_total{/dev/vda}"], 4194304n);
  assert.equal(v1["container_fs_reads_bytes_total{/dev/vda}"], 4096n);
  assert.equal(v1["container_fs_writes_total{/dev/vda}"], 4n);
  assert.equal(v1["container_fs_reads_total{/dev/vda}"], 1n);
  assert.equal(v1["container_blkio_device_usage_total{/dev/vda,254,0,Write}"], 4194304n);
  assert.equal(v1["container_blkio_device_usage_total{/dev/vda,254,0,Total}"], 4198400n);

  const v2 = keyed(
    cgroupMetrics({
      typeUrl: "",
      raw: undefined,
      v2: V2Metrics.fromPartial({
        io: { usage: [{ major: 8n, minor: 16n, rbytes: 10n, wbytes: 20n, rios: 1n, wios: 2n }] },
      }),
    }),
  );
  assert.equal(v2["container_fs_reads_bytes_total{8:16}"], 10n);
  assert.equal(v2["container_fs_writes_bytes_total{8:16}"], 20n);
  assert.equal(v2["container_fs_reads_total{8:16}"], 1n);
  assert.equal(v2["container_fs_writes_total{8:16}"], 2n);
});

test("swap: memsw minus memory on v1, unset where the cgroup accounts none", () => {
  const v1 = (swap: { usage: bigint; limit: bigint }, memLimit = 64n << 20n) => ({
    typeUrl: "",
    raw: undefined,
    v1: V1Metrics.fromPartial({ memory: { usage: { usage: 10n << 20n, limit: memLimit }, swap } }),
  });
  // limited: memsw 96 MiB over a 64 MiB memory limit leaves 32 MiB of swap, 2 MiB used
  assert.deepEqual(swapFromStats(v1({ usage: 12n << 20n, limit: 96n << 20n })), {
    usage: 2n << 20n,
    available: 30n << 20n,
  });
  // unlimited memsw: use known, nothing to say of what is left
  assert.deepEqual(swapFromStats(v1({ usage: 10n << 20n, limit: 0x7ffffffffffff000n })), {
    usage: 0n,
    available: undefined,
  });
  // no memsw files (swapaccount=0): the shim reports zeros; no swap figure, and no metric
  assert.equal(swapFromStats(v1({ usage: 0n, limit: 0n })), undefined);
  assert.ok(!cgroupMetrics(v1({ usage: 0n, limit: 0n })).some(([n]) => n === "container_memory_swap"));
});

test("the pod cgroup's swap is read from its memsw files", async () => {
  const root = mkdtempSync(join(tmpdir(), "berth-swap-"));
  try {
    const dir = join(root, "memory", "berth", "pod1");
    mkdirSync(dir, { recursive: true });
    const files: Record<string, string> = {
      "memory.usage_in_bytes": "1048576\n",
      "memory.limit_in_bytes": "9223372036854771712\n",
      "memory.memsw.usage_in_bytes": "1572864\n",
      "memory.memsw.limit_in_bytes": "9223372036854771712\n",
    };
    for (const [f, t] of Object.entries(files)) writeFileSync(join(dir, f), t);
    const mounts = [{ mountpoint: join(root, "memory"), v2: false, controllers: ["memory"] }];
    assert.deepEqual(await readCgroupSwap("/berth/pod1", mounts), { usage: 512n << 10n, available: undefined });
    rmSync(join(dir, "memory.memsw.usage_in_bytes"));
    assert.equal(await readCgroupSwap("/berth/pod1", mounts), undefined, "no memsw accounting: no swap figure");
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("PSI: totals in nanoseconds, some and full, read where the files exist", async () => {
  assert.deepEqual(parsePressure(CPU_PRESSURE), {
    Some: { Total: 263_606_000n, Avg10: 1.5, Avg60: 0.25, Avg300: 0.05 },
    Full: { Total: 100_486_000n, Avg10: 0, Avg60: 0, Avg300: 0 },
  });
  assert.equal(parsePressure(""), undefined);
  assert.deepEqual(psiFromV2({ some: { avg10: 1, avg60: 2, avg300: 3, total: 7n }, full: undefined }), {
    Some: { Total: 7000n, Avg10: 1, Avg60: 2, Avg300: 3 },
    Full: undefined,
  });
  const dir = mkdtempSync(join(tmpdir(), "berth-psi-"));
  try {
    writeFileSync(join(dir, "cpu.pressure"), CPU_PRESSURE);
    const p = await readPressure(dir);
    assert.equal(p.cpu?.Some?.Total, 263_606_000n);
    assert.equal(p.memory, undefined, "a resource without its file is left out");
    assert.equal(p.io, undefined);
    assert.deepEqual(await readPressure(undefined), {}, "no unified cgroup: no PSI");
    // cAdvisor's counters: "some" is waiting, "full" stalled, in whole seconds
    const psi = { Total: 2_500_000_000n, Avg10: 0, Avg60: 0, Avg300: 0 };
    assert.deepEqual(pressureMetrics({ cpu: { Some: psi, Full: undefined }, io: { Some: psi, Full: psi } }), [
      ["container_pressure_cpu_waiting_seconds_total", 2n],
      ["container_pressure_io_waiting_seconds_total", 2n],
      ["container_pressure_io_stalled_seconds_total", 2n],
    ]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a hybrid host's /proc/<pid>/cgroup names the v1 directories and the unified one PSI is read in", () => {
  const dirs = cgroupDirs(PROC_CGROUP_HYBRID, cgroupMounts(MOUNTINFO_HYBRID));
  assert.equal(dirs.v1("pids"), "/sys/fs/cgroup/pids/berth/pod1/ctr1");
  assert.equal(dirs.v1("cpuacct"), "/sys/fs/cgroup/cpu,cpuacct/berth/pod1/ctr1");
  assert.equal(dirs.v1("blkio"), undefined, "a controller not mounted here");
  assert.equal(dirs.unified, "/sys/fs/cgroup/unified/berth/pod1/ctr1");
  // a pure v1 host: no unified hierarchy, so no PSI directory
  const v1only = cgroupDirs(PROC_CGROUP_HYBRID, cgroupMounts(MOUNTINFO_HYBRID.split("\n").slice(1).join("\n")));
  assert.equal(v1only.unified, undefined);
});

test("/proc/net/dev: every interface but loopback, receive and transmit columns, eth0 as default", () => {
  const ifaces = parseNetDev(NET_DEV);
  assert.deepEqual(
    ifaces.map((i) => i.name),
    ["eth0", "net1"],
  );
  assert.deepEqual(ifaces[0], {
    name: "eth0",
    rxBytes: 5251522n,
    rxPackets: 3610n,
    rxErrors: 2n,
    rxDropped: 1n,
    txBytes: 241166n,
    txPackets: 3506n,
    txErrors: 3n,
    txDropped: 4n,
  });
  const usage = networkUsage(7n, ifaces);
  assert.equal(usage.defaultInterface?.name, "eth0");
  assert.deepEqual(usage.interfaces[1], {
    name: "net1",
    rxBytes: { value: 900n },
    rxErrors: { value: 0n },
    txBytes: { value: 500n },
    txErrors: { value: 0n },
  });
  assert.equal(networkUsage(7n, []).defaultInterface, undefined);

  const m = keyed(networkMetrics(ifaces));
  assert.equal(m["container_network_receive_bytes_total{eth0}"], 5251522n);
  assert.equal(m["container_network_receive_packets_total{eth0}"], 3610n);
  assert.equal(m["container_network_receive_errors_total{eth0}"], 2n);
  assert.equal(m["container_network_receive_packets_dropped_total{eth0}"], 1n);
  assert.equal(m["container_network_transmit_bytes_total{eth0}"], 241166n);
  assert.equal(m["container_network_transmit_packets_total{eth0}"], 3506n);
  assert.equal(m["container_network_transmit_errors_total{eth0}"], 3n);
  assert.equal(m["container_network_transmit_packets_dropped_total{eth0}"], 4n);
  assert.equal(m["container_network_receive_bytes_total{net1}"], 900n);
  assert.equal(Object.keys(m).length, 16);
});

test("spec metrics: the container's resources and soft rlimits, unlimited as 0", () => {
  const m = keyed(
    specMetrics({
      ociVersion: "1.0.2",
      process: { rlimits: [{ type: "RLIMIT_NOFILE", soft: 1024, hard: 4096 }] },
      linux: {
        resources: { cpu: { period: 100000, quota: 50000, shares: 512 }, memory: { limit: 64 << 20, swap: -1 } },
      },
    } as never),
  );
  assert.deepEqual(m, {
    container_spec_cpu_period: 100000n,
    container_spec_cpu_quota: 50000n,
    container_spec_cpu_shares: 512n,
    container_spec_memory_limit_bytes: 64n << 20n,
    container_spec_memory_swap_limit_bytes: 0n,
    "container_ulimits_soft{RLIMIT_NOFILE}": 1024n,
  });
  assert.deepEqual(specMetrics(undefined), []);
});

test("ContainerStats figures: working set never below zero, processes from pids", () => {
  const s = {
    typeUrl: "",
    raw: undefined,
    v1: V1Metrics.fromPartial({
      cpu: { usage: { total: 42n } },
      memory: { usage: { usage: 100n }, totalInactiveFile: 150n, totalRss: 7n },
      pids: { current: 3n, limit: 0n },
    }),
  };
  assert.deepEqual(usageOf(s), {
    cpuNs: 42n,
    workingSet: 0n,
    usage: 100n,
    rss: 7n,
    pageFaults: 0n,
    majorPageFaults: 0n,
  });
  assert.equal(processesOf(s), 3n);
  assert.equal(usageOf(undefined), undefined);
  assert.equal(threadsOf(PROC_STATUS), 3);
});
