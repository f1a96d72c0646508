// Resizes through the CRI with real runc on this host's cgroup v1: UpdatePodSandboxResources
// writes the pod's resources plus overhead to the pod cgroup; UpdateContainerResources changes
// the container's cgroup and is persisted, so ContainerStatus.resources reports the new values
// after berthd is SIGKILLed and started again. Bad requests get their gRPC code and change nothing.
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { test } from "node:test";
import { status as grpcStatus } from "@grpc/grpc-js";
import { type CriEnv } from "../helpers/cri.js";
import { useCriEnv } from "../helpers/cri-fixture.js";

const MiB = 1024n * 1024n;
let env: CriEnv;

useCriEnv({ bridge: "berthrsz0", subnet: "10.234.83.0/24" }, (e) => (env = e));

const cg = (ctl: string, path: string, file: string) =>
  readFileSync(`/sys/fs/cgroup/${ctl}${path}/${file}`, "utf8").trim();

test("UpdatePodSandboxResources sets the pod cgroup to resources + overhead", async (t) => {
  if (!existsSync("/sys/fs/cgroup/memory")) return t.skip("no cgroup v1 memory hierarchy on this host");
  const pod = await env.runPod("resize-pod");
  await env.runContainer(pod, "c", ["sleep", "1000"]);
  const podCg = `/berth/${pod.id}`;
  await env.d.rt.updatePodSandboxResources({
    podSandboxId: pod.id,
    resources: { cpuPeriod: 100000n, cpuQuota: 50000n, cpuShares: 512n, memoryLimitInBytes: 64n * MiB },
    overhead: { cpuPeriod: 100000n, cpuQuota: 10000n, cpuShares: 0n, memoryLimitInBytes: 16n * MiB },
  });
  assert.equal(cg("memory", podCg, "memory.limit_in_bytes"), String(80n * MiB));
  assert.equal(cg("cpu", podCg, "cpu.cfs_period_us"), "100000");
  assert.equal(cg("cpu", podCg, "cpu.cfs_quota_us"), "60000");
  assert.equal(cg("cpu", podCg, "cpu.shares"), "512");

  // Resized again (up): the new values replace the old.
  await env.d.rt.updatePodSandboxResources({
    podSandboxId: pod.id,
    resources: { cpuPeriod: 100000n, cpuQuota: 200000n, cpuShares: 2048n, memoryLimitInBytes: 256n * MiB },
  });
  assert.equal(cg("memory", podCg, "memory.limit_in_bytes"), String(256n * MiB));
  assert.equal(cg("cpu", podCg, "cpu.cfs_quota_us"), "200000");

  const code = (e: unknown) => (e as { code: number }).code;
  await assert.rejects(
    env.d.rt.updatePodSandboxResources({ podSandboxId: "nope", resources: { memoryLimitInBytes: 1n * MiB } }),
    (e) => code(e) === grpcStatus.NOT_FOUND,
  );
  await assert.rejects(
    env.d.rt.updatePodSandboxResources({ podSandboxId: pod.id }),
    (e) => code(e) === grpcStatus.INVALID_ARGUMENT,
  );
  await assert.rejects(
    env.d.rt.updatePodSandboxResources({ podSandboxId: pod.id, resources: { unified: { "memory.high": "1" } } }),
    (e) => code(e) === grpcStatus.INVALID_ARGUMENT,
  );
  assert.equal(cg("memory", podCg, "memory.limit_in_bytes"), String(256n * MiB), "refused requests changed nothing");

  await env.d.rt.stopPodSandbox({ podSandboxId: pod.id }, { deadlineMs: 120_000 });
  await env.d.rt.removePodSandbox({ podSandboxId: pod.id }, { deadlineMs: 120_000 });
});

test("UpdateContainerResources is reported by ContainerStatus, also after a berthd restart", async (t) => {
  if (!existsSync("/sys/fs/cgroup/memory")) return t.skip("no cgroup v1 memory hierarchy on this host");
  const pod = await env.runPod("resize-container");
  const cid = await env.runContainer(pod, "c", ["sleep", "1000"], {
    linux: { resources: { memoryLimitInBytes: 256n * MiB, cpuShares: 256n } },
  });
  const memOf = async () =>
    (await env.d.rt.containerStatus({ containerId: cid })).status!.resources!.linux!.memoryLimitInBytes;
  assert.equal(await memOf(), 256n * MiB);

  await env.d.rt.updateContainerResources({
    containerId: cid,
    linux: { memoryLimitInBytes: 128n * MiB, cpuShares: 1024n },
  });
  const ctrCg = `/berth/${pod.id}/${cid}`;
  assert.equal(cg("memory", ctrCg, "memory.limit_in_bytes"), String(128n * MiB));
  assert.equal(cg("cpu", ctrCg, "cpu.shares"), "1024");
  assert.equal(await memOf(), 128n * MiB);

  env.d.kill("SIGKILL");
  await env.restart();
  const after = (await env.d.rt.containerStatus({ containerId: cid })).status!.resources!.linux!;
  assert.equal(after.memoryLimitInBytes, 128n * MiB, "the update survived the restart");
  assert.equal(after.cpuShares, 1024n);
  assert.equal(cg("memory", ctrCg, "memory.limit_in_bytes"), String(128n * MiB));

  await env.d.rt.stopPodSandbox({ podSandboxId: pod.id }, { deadlineMs: 120_000 });
  await env.d.rt.removePodSandbox({ podSandboxId: pod.id }, { deadlineMs: 120_000 });
});
