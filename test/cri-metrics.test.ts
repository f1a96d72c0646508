// CRI metrics (ListMetricDescriptors, ListPodSandboxMetrics), which kubelet serves as its
// cAdvisor-named metrics when it takes stats from the runtime: a real pod on a private CNI
// bridge with a container under a memory limit that wrote a file, read back through berthd.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { Metric, MetricDescriptor } from "../src/gen/cri/runtime/v1/api.js";
import { startCriEnv, testImages, until, type CriEnv } from "./helpers/cri.js";

let env: CriEnv;

before(async () => {
  env = await startCriEnv({ bridge: "berthmet0", subnet: "10.234.61.0/24" });
  await env.d.img.pullImage({ image: { image: env.images.busybox } }, { deadlineMs: 120_000 });
});

after(async () => {
  await env?.stop();
  await (await testImages()).stop();
});

const value = (metrics: Metric[], name: string, extra: string[] = []) =>
  metrics.find((m) => m.name === name && extra.every((e, i) => m.labelValues[3 + i] === e))?.value?.value;

test("metrics name the container and pod they measure, with the values of its cgroup, processes and layer", async () => {
  const { descriptors } = await env.d.rt.listMetricDescriptors({});
  const byName = new Map<string, MetricDescriptor>(descriptors.map((d) => [d.name, d]));
  for (const d of descriptors) {
    assert.ok(d.help, `${d.name} has help`);
    assert.deepEqual(d.labelKeys.slice(0, 3), ["id", "name", "image"], d.name);
  }

  const pod = await env.runPod("metered");
  const cid = await env.runContainer(
    pod,
    "writer",
    ["sh", "-c", "dd if=/dev/zero of=/data bs=1M count=3 2>/dev/null; echo done; sleep 600"],
    { linux: { resources: { memoryLimitInBytes: 64n << 20n, cpuPeriod: 100000n, cpuQuota: 50000n } } },
  );
  await until(async () => {
    const r = await env.d.rt.execSync({ containerId: cid, cmd: ["test", "-s", "/data"], timeout: 10n });
    return r.exitCode === 0;
  }, "the file written");

  const { podMetrics } = await env.d.rt.listPodSandboxMetrics({});
  const pm = podMetrics.find((p) => p.podSandboxId === pod.id);
  assert.ok(pm, "the pod has metrics");
  assert.deepEqual(
    pm.containerMetrics.map((c) => c.containerId),
    [cid],
  );
  const cm = pm.containerMetrics[0].metrics;
  for (const m of [...pm.metrics, ...cm]) {
    assert.equal(m.labelValues.length, byName.get(m.name)?.labelKeys.length, `labels of ${m.name}`);
  }
  // the pod's own metrics are its network's: the CNI interface, not loopback
  const rx = pm.metrics.filter((m) => m.name === "container_network_receive_bytes_total");
  assert.deepEqual(
    rx.map((m) => [m.labelValues[0], m.labelValues[3]]),
    [[pod.id, "eth0"]],
  );

  const usage = cm.find((m) => m.name === "container_cpu_usage_seconds_total");
  assert.deepEqual(usage?.labelValues, [cid, "writer", env.images.busybox, "total"]);
  assert.equal(value(cm, "container_spec_memory_limit_bytes"), 64n << 20n);
  assert.equal(value(cm, "container_spec_cpu_period"), 100000n);
  assert.ok(value(cm, "container_memory_usage_bytes")! > 0n);
  assert.ok(value(cm, "container_processes")! >= 1n);
  assert.ok(value(cm, "container_threads")! >= 1n);
  assert.ok(value(cm, "container_file_descriptors")! >= 3n);
  assert.ok(value(cm, "container_fs_usage_bytes")! >= 3n << 20n, "the 3 MiB file is in the writable layer");
  assert.ok(value(cm, "container_fs_inodes_total")! > 0n);
  const status = (await env.d.rt.containerStatus({ containerId: cid })).status!;
  assert.equal(value(cm, "container_start_time_seconds"), status.startedAt / 1_000_000_000n);

  // a stopped pod is gone from the list
  await env.d.rt.stopPodSandbox({ podSandboxId: pod.id });
  const after = await env.d.rt.listPodSandboxMetrics({});
  assert.ok(!after.podMetrics.some((p) => p.podSandboxId === pod.id));
  await env.d.rt.removePodSandbox({ podSandboxId: pod.id });
});
