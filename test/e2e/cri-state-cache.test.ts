// berthd answers ListContainers / ContainerStatus / ListPodSandbox from the state it keeps
// (kubelet polls them every second), not by asking each shim. These tests check that the kept
// state stays true when nothing berthd did changed it: a container killed from outside, a
// shim killed outright (no exit event will ever come from it), and a berthd restart (with a
// container killed while berthd was down). And the status messages berthd keeps between polls
// (encoded once, response-encoder.ts) follow every change that should show in them.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { ContainerState, PodSandboxState } from "../../src/gen/cri/runtime/v1/api.js";
import { alive } from "../helpers/shim.js";
import { containerPid, ppid, sleep, until, type CriEnv } from "../helpers/cri.js";
import { useCriEnv } from "../helpers/cri-fixture.js";

let env: CriEnv;

useCriEnv({ bridge: "berthstc0", subnet: "10.234.43.0/24" }, (e) => (env = e));

const pidOf = (cid: string) => containerPid(env, cid);

/** The containerd-shim-runc-v2 process above a container's process. */
function runcShimOf(pid: number): number {
  for (let p = ppid(pid); p > 1; p = ppid(p)) {
    if (readFileSync(`/proc/${p}/cmdline`, "utf8").includes("containerd-shim-runc-v2")) return p;
  }
  throw new Error(`no containerd-shim-runc-v2 above pid ${pid}`);
}

/** Each container's state as ListContainers reports it. */
async function listed(podId: string): Promise<Map<string, ContainerState>> {
  const r = await env.d.rt.listContainers({ filter: { podSandboxId: podId } });
  return new Map(r.containers.map((c) => [c.id, c.state]));
}

async function podState(podId: string): Promise<PodSandboxState | undefined> {
  return (await env.d.rt.listPodSandbox({ filter: { id: podId } })).items[0]?.state;
}

async function exitedStatus(cid: string, what: string) {
  return until(
    async () => {
      const s = (await env.d.rt.containerStatus({ containerId: cid })).status!;
      return s.state === ContainerState.CONTAINER_EXITED ? s : undefined;
    },
    what,
    15_000,
  );
}

test("a container killed from outside, one killed while berthd is down, and a berthd restart: states stay true", async () => {
  const pod = await env.runPod("state-cache");
  const victim = await env.runContainer(pod, "victim", ["sleep", "1000"]);
  const runner = await env.runContainer(pod, "runner", ["sleep", "1000"]);
  const downKilled = await env.runContainer(pod, "down-killed", ["sleep", "1000"]);
  const { containerId: idle } = await env.d.rt.createContainer({
    podSandboxId: pod.id,
    config: env.containerConfig("idle", ["sleep", "1000"]),
    sandboxConfig: pod.config,
  });

  let states = await listed(pod.id);
  assert.equal(states.get(victim), ContainerState.CONTAINER_RUNNING);
  assert.equal(states.get(idle), ContainerState.CONTAINER_CREATED);
  assert.equal(await podState(pod.id), PodSandboxState.SANDBOX_READY);

  // kill -9 of the container's process: nothing berthd did, only the shim's exit event tells.
  process.kill(await pidOf(victim), "SIGKILL");
  const s = await exitedStatus(victim, "the killed container reported exited");
  assert.equal(s.exitCode, 137);
  assert.equal(s.reason, "Error");
  assert.ok(s.finishedAt >= s.startedAt && s.startedAt > 0n);
  states = await listed(pod.id);
  assert.equal(states.get(victim), ContainerState.CONTAINER_EXITED, "ListContainers agrees with ContainerStatus");
  assert.equal(states.get(runner), ContainerState.CONTAINER_RUNNING);
  const exitedOnly = await env.d.rt.listContainers({
    filter: { podSandboxId: pod.id, state: { state: ContainerState.CONTAINER_EXITED } },
  });
  assert.deepEqual(
    exitedOnly.containers.map((c) => c.id),
    [victim],
  );

  // berthd killed; a container is killed while it is down (its exit event reaches no one).
  const runnerPid = await pidOf(runner);
  const downPid = await pidOf(downKilled);
  env.d.kill("SIGKILL");
  await env.d.exited;
  process.kill(downPid, "SIGKILL");
  await sleep(500); // reaped by its monitor (berth's shim), which records the exit for the shim
  await env.restart();

  const d = await exitedStatus(downKilled, "the container killed while berthd was down reported exited");
  assert.equal(d.exitCode, 137);
  const v = (await env.d.rt.containerStatus({ containerId: victim })).status!;
  assert.equal(v.state, ContainerState.CONTAINER_EXITED);
  assert.equal(v.exitCode, 137, "the recorded exit survives the restart");
  assert.equal(v.finishedAt, s.finishedAt);
  states = await listed(pod.id);
  assert.equal(states.get(runner), ContainerState.CONTAINER_RUNNING);
  assert.equal(await pidOf(runner), runnerPid, "the same process still runs");
  assert.equal(states.get(idle), ContainerState.CONTAINER_CREATED);
  assert.equal(states.get(downKilled), ContainerState.CONTAINER_EXITED);
  assert.equal(await podState(pod.id), PodSandboxState.SANDBOX_READY);

  // And berthd's own doings after the restart: start of the created one, stop of the runner.
  await env.d.rt.startContainer({ containerId: idle });
  assert.equal((await listed(pod.id)).get(idle), ContainerState.CONTAINER_RUNNING);
  await env.d.rt.stopContainer({ containerId: runner, timeout: 0n }, { deadlineMs: 60_000 });
  const r = (await env.d.rt.containerStatus({ containerId: runner })).status!;
  assert.equal(r.state, ContainerState.CONTAINER_EXITED);
  assert.equal(r.exitCode, 137, "EXITED with its exit code as soon as StopContainer returns");

  await env.d.rt.stopPodSandbox({ podSandboxId: pod.id }, { deadlineMs: 60_000 });
  assert.equal(await podState(pod.id), PodSandboxState.SANDBOX_NOTREADY);
  await env.d.rt.removePodSandbox({ podSandboxId: pod.id }, { deadlineMs: 60_000 });
});

test("a SIGKILLed containerd-shim-runc-v2: its containers are not reported RUNNING, also after a restart", async () => {
  const pod = await env.runPod("state-cache-shimkill", {}, "runc-v2");
  const a = await env.runContainer(pod, "a", ["sleep", "1000"]);
  const pidA = await pidOf(a);
  const shim = runcShimOf(pidA);
  assert.equal((await listed(pod.id)).get(a), ContainerState.CONTAINER_RUNNING);

  process.kill(shim, "SIGKILL");
  await until(() => !alive(shim), "the shim to die", 5000);
  // No TaskExit will come from a dead shim: the manager notices the lost connection.
  const s = await exitedStatus(a, "the container of the dead shim reported exited");
  assert.equal(s.exitCode, 255);
  assert.equal(s.reason, "Unknown");
  assert.match(s.message, /shim/, "the message names the shim");
  assert.equal((await listed(pod.id)).get(a), ContainerState.CONTAINER_EXITED);
  await until(
    async () => (await podState(pod.id)) === PodSandboxState.SANDBOX_NOTREADY,
    "the pod of the dead shim reported NOTREADY",
    15_000,
  );

  env.d.kill("SIGKILL");
  await env.d.exited;
  await env.restart();
  const after = (await env.d.rt.containerStatus({ containerId: a })).status!;
  assert.equal(after.state, ContainerState.CONTAINER_EXITED, "still exited after a restart");
  assert.equal(after.exitCode, 255);
  assert.equal(await podState(pod.id), PodSandboxState.SANDBOX_NOTREADY);

  await env.d.rt.stopPodSandbox({ podSandboxId: pod.id }, { deadlineMs: 60_000 });
  await env.d.rt.removePodSandbox({ podSandboxId: pod.id }, { deadlineMs: 60_000 });
  assert.deepEqual((await env.d.rt.listContainers({ filter: { podSandboxId: pod.id } })).containers, []);
  await until(() => !alive(pidA), `the orphaned container process ${pidA} to be gone`, 10_000);
});

/** Copies a tag of the test registry's busybox to `tag` (the same manifest under a second name). */
async function tagInRegistry(from: string, tag: string): Promise<string> {
  const [host, rest] = [from.slice(0, from.indexOf("/")), from.slice(from.indexOf("/") + 1)];
  const [repo, ref] = rest.split(":") as [string, string];
  const accept = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";
  const got = await fetch(`http://${host}/v2/${repo}/manifests/${ref}`, { headers: { accept } });
  assert.equal(got.status, 200);
  const type = got.headers.get("content-type")!;
  const put = await fetch(`http://${host}/v2/${repo}/manifests/${tag}`, {
    method: "PUT",
    headers: { "content-type": type },
    body: Buffer.from(await got.arrayBuffer()),
  });
  assert.equal(put.status, 201);
  return `${host}/${repo}:${tag}`;
}

test("the status messages berthd keeps between polls follow every change: resources, an exit, the pod's stop, a new tag", async () => {
  const pod = await env.runPod("kept-status");
  const cid = await env.runContainer(pod, "kept", ["sleep", "1000"]);
  const status = async () => (await env.d.rt.containerStatus({ containerId: cid })).status!;
  const podStatus = () => env.d.rt.podSandboxStatus({ podSandboxId: pod.id });

  // Polled again without a change: the same answer (the pod's with a new timestamp).
  const first = await status();
  assert.deepEqual(await status(), first);
  const p1 = await podStatus();
  const p2 = await podStatus();
  assert.deepEqual(p2.status, p1.status);
  assert.deepEqual(p2.containersStatuses, p1.containersStatuses);
  assert.deepEqual(
    p2.containersStatuses.map((c) => c.state),
    [ContainerState.CONTAINER_RUNNING],
  );
  assert.ok(p2.timestamp >= p1.timestamp && p1.timestamp > 0n);

  // New resources: in the container's status and in its pod's.
  await env.d.rt.updateContainerResources({ containerId: cid, linux: { cpuShares: 512n } });
  assert.equal((await status()).resources?.linux?.cpuShares, 512n);
  assert.equal((await podStatus()).containersStatuses[0]?.resources?.linux?.cpuShares, 512n);

  // A new name for the image: ImageStatus and ListImages carry it at once; the container's
  // image_ref does not move (the same image).
  const image = env.images.busybox;
  const before = (await env.d.img.imageStatus({ image: { image } })).image!;
  const listed = async () =>
    (await env.d.img.listImages({})).images
      .find((i) => i.id === before.id)
      ?.repoTags.slice()
      .sort();
  assert.deepEqual(await listed(), before.repoTags.slice().sort());
  const second = await tagInRegistry(image, "kept-status");
  await env.d.img.pullImage({ image: { image: second } }, { deadlineMs: 60_000 });
  const after = (await env.d.img.imageStatus({ image: { image } })).image!;
  assert.equal(after.id, before.id);
  assert.deepEqual(after.repoTags.slice().sort(), [...before.repoTags, second].sort());
  assert.deepEqual(await listed(), [...before.repoTags, second].sort());
  assert.equal((await status()).imageRef, first.imageRef);

  // The exit, then the pod's stop.
  process.kill(await pidOf(cid), "SIGKILL");
  const exited = await exitedStatus(cid, "the killed container reported exited");
  assert.equal(exited.exitCode, 137);
  assert.equal((await podStatus()).containersStatuses[0]?.state, ContainerState.CONTAINER_EXITED);
  const ready = (await podStatus()).status!;
  assert.equal(ready.state, PodSandboxState.SANDBOX_READY);
  assert.notEqual(ready.network?.ip, "");
  await env.d.rt.stopPodSandbox({ podSandboxId: pod.id }, { deadlineMs: 60_000 });
  const stopped = (await podStatus()).status!;
  assert.equal(stopped.state, PodSandboxState.SANDBOX_NOTREADY);
  assert.equal(stopped.network?.ip, "", "no IP once the network is torn down");
  await env.d.rt.removePodSandbox({ podSandboxId: pod.id }, { deadlineMs: 60_000 });
  await env.d.img.removeImage({ image: { image: second } });
});
