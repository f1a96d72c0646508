// Pod and container usage as kubelet takes it from the runtime (PodSandboxStats,
// ContainerStats, ListMetricDescriptors, ListPodSandboxMetrics), through berthd's CRI socket
// with real runc and a real CNI bridge: network traffic of known size between two pods, a
// container under memory, swap and CPU limits, and a container writing with O_DIRECT.
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync, rmdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import type { Metric, MetricDescriptor, PodSandboxMetrics } from "../../src/gen/cri/runtime/v1/api.js";
import { containerPid, until, type CriEnv } from "../helpers/cri.js";
import { useCriEnv } from "../helpers/cri-fixture.js";

let env!: CriEnv;
useCriEnv({ bridge: "berthmet0", subnet: "10.234.61.0/24" }, (e) => (env = e));

const MiB = 1n << 20n;
const SEC = 1_000_000_000n;

/** The value of metric `name` whose label values after the five base ones are `extra`. */
const value = (metrics: Metric[], name: string, extra: string[] = []) =>
  metrics.find((m) => m.name === name && extra.every((e, i) => m.labelValues[5 + i] === e))?.value?.value;

async function podMetrics(podId: string): Promise<PodSandboxMetrics> {
  const { podMetrics } = await env.d.rt.listPodSandboxMetrics({});
  const pm = podMetrics.find((p) => p.podSandboxId === podId);
  assert.ok(pm, `pod ${podId} has metrics`);
  return pm;
}

async function exec(containerId: string, cmd: string[]): Promise<{ exitCode: number; out: string }> {
  const r = await env.d.rt.execSync({ containerId, cmd, timeout: 60n }, { deadlineMs: 90_000 });
  return { exitCode: r.exitCode, out: r.stdout.toString() + r.stderr.toString() };
}

/** The unified-hierarchy directory of a process's cgroup, where PSI files live (if any). */
function unifiedDirOf(pid: number): string | undefined {
  const line = readFileSync(`/proc/${pid}/cgroup`, "utf8")
    .split("\n")
    .find((l) => l.startsWith("0::"));
  const mount = readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .find((l) => l.includes(" - cgroup2 "));
  return line && mount ? join(mount.split(" ")[4]!, line.slice(3)) : undefined;
}

test("network: a pod that downloads 2 MiB from another pod shows it received on eth0, in stats and in metrics", async () => {
  const size = 2n * MiB;
  const server = await env.runPod("net-server");
  await env.runContainer(server, "httpd", [
    "sh",
    "-c",
    `dd if=/dev/urandom of=/www/blob bs=1024 count=${size / 1024n} 2>/dev/null && exec httpd -f -p 8080 -h /www`,
  ]);
  const client = await env.runPod("net-client");
  const clientCtr = await env.runContainer(client, "wget", ["sleep", "600"]);
  const serverIp = (await env.d.rt.podSandboxStatus({ podSandboxId: server.id })).status!.network!.ip;
  // The server is ready once the whole blob answers; each attempt is a full download.
  await until(
    async () =>
      (await exec(clientCtr, ["wget", "-q", "-O", "/dev/null", `http://${serverIp}:8080/blob`])).exitCode === 0,
    "the blob downloaded",
    60_000,
  );

  const stats = (await env.d.rt.podSandboxStats({ podSandboxId: client.id })).stats!.linux!;
  const net = stats.network!;
  assert.ok(net, "the client pod has network stats");
  assert.deepEqual(
    net.interfaces.map((i) => i.name),
    ["eth0"],
    "the pod's interfaces, loopback left out",
  );
  assert.equal(net.defaultInterface?.name, "eth0");
  assert.ok(net.defaultInterface!.rxBytes!.value >= size, `eth0 received ${net.defaultInterface!.rxBytes!.value}`);
  assert.ok(net.defaultInterface!.txBytes!.value > 0n, "the request went out");
  assert.equal(net.defaultInterface!.rxErrors!.value, 0n);
  const served = (await env.d.rt.podSandboxStats({ podSandboxId: server.id })).stats!.linux!.network!;
  assert.ok(served.defaultInterface!.txBytes!.value >= size, "the server pod sent the blob");

  const pm = await podMetrics(client.id);
  const rx = pm.metrics.filter((m) => m.name === "container_network_receive_bytes_total");
  assert.deepEqual(
    rx.map((m) => m.labelValues),
    [["net-client", "berth-test", "", client.id, "", "eth0"]],
    "pod-level network metrics: pod, namespace, no container, the sandbox id, no image, the interface",
  );
  assert.ok(rx[0]!.value!.value >= size);
  assert.ok(value(pm.metrics, "container_network_transmit_bytes_total", ["eth0"])! > 0n);
  assert.equal(value(pm.metrics, "container_network_receive_errors_total", ["eth0"]), 0n);
  assert.ok(value((await podMetrics(server.id)).metrics, "container_network_transmit_bytes_total", ["eth0"])! >= size);

  for (const p of [client, server]) {
    await env.d.rt.stopPodSandbox({ podSandboxId: p.id });
    await env.d.rt.removePodSandbox({ podSandboxId: p.id });
  }
});

test("descriptors cover every metric; CPU, memory, swap, processes and PSI agree with ContainerStats", async () => {
  const { descriptors } = await env.d.rt.listMetricDescriptors({});
  const byName = new Map<string, MetricDescriptor>(descriptors.map((d) => [d.name, d]));
  for (const d of descriptors) {
    assert.ok(d.help, `${d.name} has help`);
    assert.deepEqual(d.labelKeys.slice(0, 5), ["pod", "namespace", "container", "id", "image"], d.name);
  }

  const pod = await env.runPod("metered");
  const cid = await env.runContainer(
    pod,
    "writer",
    // two processes: the shell and its sleep; a 3 MiB file in the writable layer
    ["sh", "-c", "dd if=/dev/zero of=/data bs=1M count=3 2>/dev/null; sleep 600; true"],
    {
      linux: {
        resources: {
          memoryLimitInBytes: 64n * MiB,
          memorySwapLimitInBytes: 96n * MiB,
          cpuPeriod: 100000n,
          cpuQuota: 50000n,
        },
      },
    },
  );
  await until(async () => (await exec(cid, ["test", "-s", "/data"])).exitCode === 0, "the file written");
  await until(
    async () => (await env.d.rt.containerStats({ containerId: cid })).stats?.memory?.workingSetBytes,
    "memory stats",
  );

  // CPU is a counter: the metric lies between two ContainerStats read before and after it.
  const before = (await env.d.rt.containerStats({ containerId: cid })).stats!;
  const pm = await podMetrics(pod.id);
  const after = (await env.d.rt.containerStats({ containerId: cid })).stats!;
  assert.deepEqual(
    pm.containerMetrics.map((c) => c.containerId),
    [cid],
  );
  const cm = pm.containerMetrics[0]!.metrics;
  for (const m of [...pm.metrics, ...cm]) {
    const d = byName.get(m.name);
    assert.ok(d, `${m.name} has a descriptor`);
    assert.equal(m.labelValues.length, d.labelKeys.length, `labels of ${m.name}`);
  }
  const usage = cm.find((m) => m.name === "container_cpu_usage_seconds_total");
  assert.deepEqual(usage?.labelValues, ["metered", "berth-test", "writer", cid, env.images.busybox]);
  const cpu = usage!.value!.value;
  assert.ok(before.cpu!.usageCoreNanoSeconds!.value / SEC <= cpu, "metric cpu >= the stats before it");
  assert.ok(cpu <= after.cpu!.usageCoreNanoSeconds!.value / SEC, "metric cpu <= the stats after it");

  // Memory moves: what is fixed are the limits, and usage >= working set in both views.
  assert.equal(value(cm, "container_spec_memory_limit_bytes"), 64n * MiB);
  assert.equal(value(cm, "container_spec_memory_swap_limit_bytes"), 96n * MiB);
  assert.equal(value(cm, "container_spec_cpu_period"), 100000n);
  assert.equal(value(cm, "container_spec_cpu_quota"), 50000n);
  assert.ok(value(cm, "container_memory_usage_bytes")! >= value(cm, "container_memory_working_set_bytes")!);
  assert.ok(after.memory!.usageBytes!.value >= after.memory!.workingSetBytes!.value);
  const fsUsage = cm.find((m) => m.name === "container_fs_usage_bytes");
  assert.ok(fsUsage!.value!.value >= 3n * MiB, "the 3 MiB file is in the writable layer");
  assert.ok(fsUsage!.labelValues[5]!.startsWith(env.d.root), "on the filesystem of berth's root");
  assert.ok(after.writableLayer!.usedBytes!.value >= 3n * MiB);

  // Processes: sh and sleep, the same count in the metric and in the pod's stats.
  const podStats = (await env.d.rt.podSandboxStats({ podSandboxId: pod.id })).stats!.linux!;
  assert.equal(value(cm, "container_processes"), 2n);
  assert.equal(podStats.process?.processCount?.value, 2n, "the containers' processes, the sandbox's not counted");
  assert.ok(value(cm, "container_threads")! >= 2n);
  assert.ok(value(cm, "container_file_descriptors")! >= 3n);
  const status = (await env.d.rt.containerStatus({ containerId: cid })).status!;
  assert.equal(value(cm, "container_start_time_seconds"), status.startedAt / SEC);

  // Swap, where the memory cgroup accounts it (memsw): 96 - 64 MiB of swap allowed.
  if (existsSync("/sys/fs/cgroup/memory/memory.memsw.usage_in_bytes")) {
    const swap = after.swap!;
    assert.ok(swap, "swap stats where memsw is accounted");
    assert.equal(swap.swapUsageBytes!.value + swap.swapAvailableBytes!.value, 32n * MiB);
    assert.equal(value(cm, "container_memory_swap") !== undefined, true);
  } else {
    console.log("# swap: this host's memory cgroup has no memsw accounting; swap stats must be unset");
    assert.equal(after.swap, undefined);
  }

  // PSI, where the container's unified cgroup has pressure files (v2, or a hybrid host's).
  const dir = unifiedDirOf(await containerPid(env, cid));
  if (dir && existsSync(join(dir, "cpu.pressure"))) {
    for (const [what, psi] of [
      ["cpu", after.cpu?.psi],
      ["memory", after.memory?.psi],
      ["io", after.io?.psi],
    ] as const) {
      assert.ok(psi?.Some, `${what} PSI "some"`);
      assert.ok(psi.Full, `${what} PSI "full"`);
    }
    assert.ok(podStats.cpu?.psi?.Some && podStats.memory?.psi?.Some && podStats.io?.psi?.Some, "the pod cgroup's PSI");
    for (const r of ["cpu", "memory", "io"]) {
      assert.notEqual(value(cm, `container_pressure_${r}_waiting_seconds_total`), undefined, `${r} PSI metric`);
      assert.notEqual(value(cm, `container_pressure_${r}_stalled_seconds_total`), undefined, `${r} PSI metric`);
    }
  } else {
    console.log(`# PSI: no pressure files in the container's unified cgroup (${dir ?? "none"}); PSI must be unset`);
    assert.equal(after.cpu?.psi, undefined);
    assert.equal(after.io, undefined);
    assert.ok(!cm.some((m) => m.name.startsWith("container_pressure_")));
  }

  // a stopped pod is gone from the list
  await env.d.rt.stopPodSandbox({ podSandboxId: pod.id });
  assert.ok(!(await env.d.rt.listPodSandboxMetrics({})).podMetrics.some((p) => p.podSandboxId === pod.id));
  await env.d.rt.removePodSandbox({ podSandboxId: pod.id });
});

/** The whole disk holding `path` as "MAJ:MIN" (blk-throttle rules name disks, not partitions). */
function diskOf(path: string): string {
  const dev = statSync(path).dev;
  const majmin = `${Math.floor(dev / 256) & 0xfff}:${(dev & 0xff) | ((dev >> 12) & 0xfff00)}`;
  const sys = `/sys/dev/block/${majmin}`;
  if (!existsSync(join(sys, "partition"))) return majmin;
  return readFileSync(join(sys, "..", "dev"), "utf8").trim();
}

test("disk I/O: a container writing 4 MiB with O_DIRECT shows it in the blkio metrics", async (t) => {
  const blkio = "/sys/fs/cgroup/blkio";
  if (!existsSync(join(blkio, "blkio.throttle.io_service_bytes_recursive"))) {
    t.skip("no cgroup v1 blkio controller on this host (berth's shim reports v1 metrics)");
    return;
  }
  // Kernels without CFQ count a cgroup's I/O only in blk-throttle, which (since 6.9) starts
  // counting on a disk once some cgroup set a rule for it. Setting and clearing one, in a
  // cgroup of the test's own, makes this host count as a host with any throttle rule does.
  const disk = diskOf(env.d.root);
  const probe = join(blkio, `berth-metrics-probe-${process.pid}`);
  mkdirSync(probe);
  try {
    writeFileSync(join(probe, "blkio.throttle.write_bps_device"), `${disk} ${2 ** 40}`);
    writeFileSync(join(probe, "blkio.throttle.write_bps_device"), `${disk} 0`);
  } finally {
    rmdirSync(probe);
  }

  const pod = await env.runPod("io");
  const cid = await env.runContainer(pod, "dd", ["sleep", "600"]);
  const dd = await exec(cid, ["dd", "if=/dev/zero", "of=/direct", "bs=1M", "count=4", "oflag=direct"]);
  assert.equal(dd.exitCode, 0, dd.out);
  const cm = (await podMetrics(pod.id)).containerMetrics[0]!.metrics;
  const writes = cm.filter((m) => m.name === "container_fs_writes_bytes_total");
  const device = `/dev/${readFileSync(`/sys/dev/block/${disk}/uevent`, "utf8").match(/^DEVNAME=(.+)$/m)![1]}`;
  const written = writes.find((m) => m.labelValues[5] === device);
  assert.ok(written, `a write counter for ${device}: ${JSON.stringify(writes.map((m) => m.labelValues))}`);
  assert.ok(written.value!.value >= 4n * MiB, `${written.value!.value} bytes written`);
  const [major, minor] = disk.split(":");
  assert.ok(value(cm, "container_blkio_device_usage_total", [device, major!, minor!, "Write"])! >= 4n * MiB);
  assert.ok(value(cm, "container_fs_writes_total", [device])! >= 4n, "at least one write per MiB");

  await env.d.rt.stopPodSandbox({ podSandboxId: pod.id });
  await env.d.rt.removePodSandbox({ podSandboxId: pod.id });
});
