// A pod whose sandbox process dies by itself, and the pod cgroup, through berthd's CRI socket.
// As with containerd: the pod turns NOTREADY for good (also when it died while berthd was
// down), kubelet hears CONTAINER_STOPPED for it, its task is deleted, its containers keep
// running until StopPodSandbox, and Stop + Remove then leave nothing. A pod kubelet gives no
// cgroup parent lives in a pod cgroup of its own (/berth/<podId>/<id>), whose totals
// PodSandboxStats reports and which RemovePodSandbox removes; a parent kubelet gave stays.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import {
  ContainerEventType,
  ContainerState,
  NamespaceMode,
  PodSandboxState,
  type ContainerEventResponse,
} from "../../src/gen/cri/runtime/v1/api.js";
import { sleep, until, type CriEnv } from "../helpers/cri.js";
import { useCriEnv } from "../helpers/cri-fixture.js";
import { daemonLeaks } from "../helpers/leaks.js";

const BRIDGE = "berthsbx0";
let env: CriEnv;

useCriEnv({ bridge: BRIDGE, subnet: "10.234.41.0/24" }, (e) => (env = e));

async function infoOf(podId: string): Promise<{ pid: number; processStatus: string }> {
  const r = await env.d.rt.podSandboxStatus({ podSandboxId: podId, verbose: true });
  return JSON.parse(r.info.info!) as { pid: number; processStatus: string };
}

async function containerPid(cid: string): Promise<number> {
  const r = await env.d.rt.containerStatus({ containerId: cid, verbose: true });
  return (JSON.parse(r.info.info!) as { pid: number }).pid;
}

function gone(pid: number): boolean {
  try {
    // A zombie still has /proc/<pid>; its state is Z.
    return / Z /.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return true;
  }
}

/** The containers runc still knows in berth's shim runtime root. */
function runcIds(): string[] {
  const root = join(env.d.dir, "runc");
  if (!existsSync(root)) return [];
  return execFileSync("runc", ["--root", root, "list", "-q"], { encoding: "utf8" }).split("\n").filter(Boolean);
}

/** controller -> cgroup path of a process (v1 "N:ctrls:/path" lines; "" for the unified one). */
function cgroupsOf(pid: number): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of readFileSync(`/proc/${pid}/cgroup`, "utf8").split("\n")) {
    const m = /^\d+:([^:]*):(.*)$/.exec(line);
    if (m) for (const c of m[1]!.split(",")) out.set(c, m[2]!);
  }
  return out;
}

/** Every hierarchy directory under /sys/fs/cgroup (v1 controllers, name=systemd, unified). */
function hierarchies(): string[] {
  return readdirSync("/sys/fs/cgroup")
    .map((c) => join("/sys/fs/cgroup", c))
    .filter((p) => existsSync(join(p, "cgroup.procs")));
}

function noLeaks(ids: string[]): void {
  // A pre-started idle shim of berthd's may be waiting for the next pod: not a leak.
  assert.deepEqual(daemonLeaks(env.d, { bridge: BRIDGE, ids }), []);
}

// kubelet's default: each container has its own PID namespace, so the containers outlive the
// pause process (with a shared one the kernel kills them all when it dies).
const podOpts = { linux: { securityContext: { namespaceOptions: { pid: NamespaceMode.CONTAINER } } } };

test("a sandbox process that dies makes the pod NOTREADY for good; Stop and Remove then clean up", async () => {
  const events: ContainerEventResponse[] = [];
  const stream = env.d.runtime.getContainerEvents({});
  stream.on("data", (e: ContainerEventResponse) => events.push(e));
  stream.on("error", () => {});
  try {
    await sleep(200);
    const pod = await env.runPod("sbx-dies", podOpts);
    const cid = await env.runContainer(pod, "survivor", ["sleep", "1000"]);
    const ip = (await env.d.rt.podSandboxStatus({ podSandboxId: pod.id })).status!.network!.ip;
    assert.match(ip, /^10\.234\.41\.\d+$/);
    const { pid } = await infoOf(pod.id);
    assert.ok(pid > 0);
    assert.ok(runcIds().includes(pod.id));

    process.kill(pid, "SIGKILL");
    const stopped = await until(
      () =>
        events.find(
          (e) => e.containerId === pod.id && e.containerEventType === ContainerEventType.CONTAINER_STOPPED_EVENT,
        ),
      "CONTAINER_STOPPED for the pod",
    );
    assert.equal(stopped.podSandboxStatus?.state, PodSandboxState.SANDBOX_NOTREADY);

    const st = await env.d.rt.podSandboxStatus({ podSandboxId: pod.id });
    assert.equal(st.status?.state, PodSandboxState.SANDBOX_NOTREADY);
    assert.equal(st.status?.network?.ip, ip, "the IP is reported until the network is torn down, as containerd does");
    const ready = await env.d.rt.listPodSandbox({ filter: { state: { state: PodSandboxState.SANDBOX_READY } } });
    assert.ok(!ready.items.some((p) => p.id === pod.id), "not listed as READY");
    const notReady = await env.d.rt.listPodSandbox({ filter: { state: { state: PodSandboxState.SANDBOX_NOTREADY } } });
    assert.ok(
      notReady.items.some((p) => p.id === pod.id),
      "listed as NOTREADY",
    );
    assert.equal(
      (await env.d.rt.listPodSandbox({ filter: { id: pod.id } })).items[0]?.state,
      PodSandboxState.SANDBOX_NOTREADY,
    );
    await until(() => !runcIds().includes(pod.id), "the sandbox task deleted");
    await assert.rejects(
      env.d.rt.portForward({ podSandboxId: pod.id, port: [80] }),
      (e: { code?: number; message: string }) => e.code === 9 && /sandbox process exited/.test(e.message),
      "PortForward to a NOTREADY pod is FAILED_PRECONDITION",
    );

    // The container keeps running until kubelet stops the pod.
    const cs = (await env.d.rt.containerStatus({ containerId: cid })).status!;
    assert.equal(cs.state, ContainerState.CONTAINER_RUNNING);
    const running = await env.d.rt.listContainers({
      filter: { podSandboxId: pod.id, state: { state: ContainerState.CONTAINER_RUNNING } },
    });
    assert.deepEqual(
      running.containers.map((c) => c.id),
      [cid],
    );
    const cpid = await containerPid(cid);
    assert.ok(!gone(cpid));

    // Only one STOPPED event for the pod, also after StopPodSandbox.
    await env.d.rt.stopPodSandbox({ podSandboxId: pod.id });
    assert.ok(gone(cpid), "StopPodSandbox stopped the container");
    assert.equal((await env.d.rt.containerStatus({ containerId: cid })).status?.state, ContainerState.CONTAINER_EXITED);
    const after = await env.d.rt.podSandboxStatus({ podSandboxId: pod.id });
    assert.equal(after.status?.state, PodSandboxState.SANDBOX_NOTREADY);
    assert.equal(after.status?.network?.ip, "", "no IP once the network is gone");
    await env.d.rt.removePodSandbox({ podSandboxId: pod.id });
    await until(
      () =>
        events.some(
          (e) => e.containerId === pod.id && e.containerEventType === ContainerEventType.CONTAINER_DELETED_EVENT,
        ),
      "CONTAINER_DELETED for the pod",
    );
    assert.equal(
      events.filter(
        (e) => e.containerId === pod.id && e.containerEventType === ContainerEventType.CONTAINER_STOPPED_EVENT,
      ).length,
      1,
    );
    assert.deepEqual((await env.d.rt.listPodSandbox({ filter: { id: pod.id } })).items, []);
    noLeaks([pod.id, cid]);
  } finally {
    stream.cancel();
  }
});

test("a sandbox process that died while berthd was down is found NOTREADY after the restart", async () => {
  const pod = await env.runPod("sbx-dies-offline", podOpts);
  const cid = await env.runContainer(pod, "survivor", ["sleep", "1000"]);
  const { pid } = await infoOf(pod.id);
  const cpid = await containerPid(cid);

  env.d.kill("SIGKILL");
  await env.d.exited;
  process.kill(pid, "SIGKILL");
  await until(() => gone(pid), "the pause process reaped by its shim");
  await env.restart();

  assert.equal(
    (await env.d.rt.podSandboxStatus({ podSandboxId: pod.id })).status?.state,
    PodSandboxState.SANDBOX_NOTREADY,
  );
  assert.equal((await infoOf(pod.id)).processStatus, "exited");
  const ready = await env.d.rt.listPodSandbox({ filter: { state: { state: PodSandboxState.SANDBOX_READY } } });
  assert.ok(!ready.items.some((p) => p.id === pod.id));
  assert.ok(!runcIds().includes(pod.id), "recovery deleted the exited sandbox task");
  assert.equal((await env.d.rt.containerStatus({ containerId: cid })).status?.state, ContainerState.CONTAINER_RUNNING);
  assert.equal(await containerPid(cid), cpid, "the container kept running");

  // Recorded, not recomputed: still NOTREADY after a further (clean) restart.
  await env.d.stop();
  await env.restart();
  assert.equal(
    (await env.d.rt.podSandboxStatus({ podSandboxId: pod.id })).status?.state,
    PodSandboxState.SANDBOX_NOTREADY,
  );

  await env.d.rt.stopPodSandbox({ podSandboxId: pod.id });
  await env.d.rt.removePodSandbox({ podSandboxId: pod.id });
  assert.ok(gone(cpid));
  noLeaks([pod.id, cid]);
});

test("a pod without a cgroup parent gets its own pod cgroup, reported by PodSandboxStats and removed with it", async () => {
  const pod = await env.runPod("pod-cgroup", podOpts);
  const cid = await env.runContainer(pod, "filler", [
    "sh",
    "-c",
    "dd if=/dev/zero of=/tmp/blob bs=1M count=8 2>/dev/null; exec sleep 1000",
  ]);
  const cpid = await containerPid(cid);
  const { pid } = await infoOf(pod.id);
  assert.equal(cgroupsOf(cpid).get("memory"), `/berth/${pod.id}/${cid}`);
  assert.equal(cgroupsOf(cpid).get("pids"), `/berth/${pod.id}/${cid}`);
  assert.equal(cgroupsOf(pid).get("memory"), `/berth/${pod.id}/${pod.id}`);

  await until(async () => {
    const s = (await env.d.rt.containerStats({ containerId: cid })).stats!;
    return (s.memory?.usageBytes?.value ?? 0n) >= 8n * 1024n * 1024n;
  }, "the container's 8 MiB charged");
  const c = (await env.d.rt.containerStats({ containerId: cid })).stats!;
  const p = (await env.d.rt.podSandboxStats({ podSandboxId: pod.id })).stats!;
  const mem = p.linux!.memory!;
  // Memory is not monotonic (two reads are two moments), so compare with the 8 MiB the container
  // was seen holding, not with its own second read.
  assert.ok(mem.usageBytes!.value >= 8n * 1024n * 1024n, "the pod's memory includes its container's 8 MiB");
  assert.ok(mem.workingSetBytes!.value > 0n);
  assert.ok((mem.rssBytes?.value ?? -1n) >= 0n, "rss read from the pod cgroup");
  assert.ok(p.linux!.cpu!.usageCoreNanoSeconds!.value >= c.cpu!.usageCoreNanoSeconds!.value);
  assert.ok(p.linux!.cpu!.usageCoreNanoSeconds!.value > 0n);
  assert.deepEqual(
    p.linux!.containers.map((x) => x.attributes?.id),
    [cid],
  );

  await env.d.rt.stopPodSandbox({ podSandboxId: pod.id });
  await env.d.rt.removePodSandbox({ podSandboxId: pod.id });
  const left = hierarchies().filter((h) => existsSync(join(h, "berth", pod.id)));
  assert.deepEqual(left, [], "no pod cgroup in any hierarchy");
  noLeaks([pod.id, cid]);
});

test("a cgroup parent kubelet gives is used as it is and never removed", async () => {
  const parent = `/berth-sbxtest-${process.pid}`;
  const dirs = hierarchies().map((h) => join(h, parent));
  for (const d of dirs) mkdirSync(d, { recursive: true });
  try {
    const pod = await env.runPod("given-parent", { ...podOpts, linux: { ...podOpts.linux, cgroupParent: parent } });
    const cid = await env.runContainer(pod, "sleeper", ["sleep", "1000"]);
    assert.equal(cgroupsOf(await containerPid(cid)).get("memory"), `${parent}/${cid}`);
    assert.equal(cgroupsOf((await infoOf(pod.id)).pid).get("memory"), `${parent}/${pod.id}`);
    const p = (await env.d.rt.podSandboxStats({ podSandboxId: pod.id })).stats!;
    assert.ok(p.linux!.memory!.usageBytes!.value > 0n, "read from the given parent");

    await env.d.rt.stopPodSandbox({ podSandboxId: pod.id });
    await env.d.rt.removePodSandbox({ podSandboxId: pod.id });
    for (const d of dirs) {
      assert.ok(existsSync(d), `${d} kept`);
      assert.deepEqual(
        readdirSync(d, { withFileTypes: true })
          .filter((e) => e.isDirectory())
          .map((e) => e.name),
        [],
        `nothing left below ${d}`,
      );
    }
    noLeaks([pod.id, cid]);
  } finally {
    for (const d of dirs) {
      try {
        rmdirSync(d);
      } catch {
        // not made or already gone
      }
    }
  }
});
