// berthd SIGKILLed at random moments under pod churn (issue 13 item 9): two clients run
// RunPodSandbox / CreateContainer / StartContainer / StopContainer / RemoveContainer /
// StopPodSandbox / RemovePodSandbox in a loop (one also removes what the previous round left),
// berthd is killed after a seeded random delay and started again on the same root and state.
// After each restart, what berthd lists agrees with the machine, and everything in its per-id
// state dirs (netns files, network records, bundles, io and pod dirs) and every reserved IP
// belongs to a listed pod or container: recovery finished, rolled back or swept the rest. At the end every pod is
// removed through the CRI and nothing of berth's is left on the host.
// BERTH_SEED replays a schedule (the seed is printed); BERTH_KILL_ROUNDS sets the rounds (16).
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { basename, join } from "node:path";
import { after, before, test } from "node:test";
import { ContainerState, PodSandboxState } from "../../src/gen/cri/runtime/v1/api.js";
import { sleep, startCriEnv, testImages, type CriEnv } from "../helpers/cri.js";
import { daemonLeaks, settledWarmShims } from "../helpers/leaks.js";
import { rng } from "../helpers/seeded-random.js";

const ROUNDS = Number(process.env.BERTH_KILL_ROUNDS ?? 16);
const SEED = Number(process.env.BERTH_SEED ?? Date.now() % 0x7fffffff);
const BRIDGE = "berthrkill0";

const random = rng(SEED);

let env: CriEnv;
/** Every pod and container id seen: none may leave a cgroup or path behind. */
const ids = new Set<string>();

before(async () => {
  console.log(`random kill: seed ${SEED} (BERTH_SEED=${SEED} replays it), ${ROUNDS} rounds`);
  env = await startCriEnv({ bridge: BRIDGE, subnet: "10.234.91.0/24" });
  await env.d.img.pullImage({ image: { image: env.images.busybox } }, { deadlineMs: 120_000 });
});

after(async () => {
  try {
    await env?.stop();
  } finally {
    await (await testImages()).stop();
  }
});

function alive(pid: number): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** One pod's life, start to end, as kubelet drives it; `at` is told each call before it is made. */
async function podCycle(name: string, at: (call: string) => void = () => {}): Promise<void> {
  at("RunPodSandbox");
  const pod = await env.runPod(name);
  ids.add(pod.id);
  at("CreateContainer");
  const { containerId } = await env.d.rt.createContainer(
    { podSandboxId: pod.id, config: env.containerConfig("c", ["sleep", "1000"]), sandboxConfig: pod.config },
    { deadlineMs: 120_000 },
  );
  ids.add(containerId);
  at("StartContainer");
  await env.d.rt.startContainer({ containerId }, { deadlineMs: 120_000 });
  at("StopContainer");
  await env.d.rt.stopContainer({ containerId, timeout: 0n }, { deadlineMs: 120_000 });
  at("RemoveContainer");
  await env.d.rt.removeContainer({ containerId }, { deadlineMs: 120_000 });
  at("StopPodSandbox");
  await env.d.rt.stopPodSandbox({ podSandboxId: pod.id }, { deadlineMs: 120_000 });
  at("RemovePodSandbox");
  await env.d.rt.removePodSandbox({ podSandboxId: pod.id }, { deadlineMs: 120_000 });
}

/** Stops and removes every listed pod (what earlier rounds' kills left). */
async function removeAllPods(at: (call: string) => void = () => {}): Promise<void> {
  for (const p of (await env.d.rt.listPodSandbox({})).items) {
    ids.add(p.id);
    at(`StopPodSandbox of a leftover (${PodSandboxState[p.state]})`);
    await env.d.rt.stopPodSandbox({ podSandboxId: p.id }, { deadlineMs: 120_000 });
    at(`RemovePodSandbox of a leftover`);
    await env.d.rt.removePodSandbox({ podSandboxId: p.id }, { deadlineMs: 120_000 });
  }
}

interface Round {
  killed: boolean;
  /** what each client was doing, for the round's line */
  ops: string[];
  /** errors while berthd was alive: each is a failure */
  errors: string[];
}

/** A client that churns until berthd is killed; an error before that is recorded as a failure. */
async function client(r: Round, w: number, round: number, cleanFirst: boolean): Promise<void> {
  let n = 0;
  const at = (call: string) => (r.ops[w] = `${call} (cycle ${n})`);
  try {
    if (cleanFirst) await removeAllPods(at);
    for (; ; n++) await podCycle(`rk-${round}-${w}-${n}`, at);
  } catch (err) {
    if (!r.killed) r.errors.push(`client ${w} (${r.ops[w]}): ${(err as Error).message.split("\n")[0]}`);
  }
}

/** What berthd lists agrees with the machine, and no per-id state belongs to nothing listed. */
async function assertConsistent(when: string): Promise<void> {
  const pods = (await env.d.rt.listPodSandbox({})).items;
  const containers = (await env.d.rt.listContainers({})).containers;
  for (const p of pods) {
    ids.add(p.id);
    const r = await env.d.rt.podSandboxStatus({ podSandboxId: p.id, verbose: true });
    const info = JSON.parse(r.info.info!) as { pid: number; processStatus: string; netNamespacePath: string };
    if (p.state === PodSandboxState.SANDBOX_READY) {
      assert.ok(alive(info.pid), `${when}: READY pod ${p.id} has its sandbox process ${info.pid}`);
      assert.ok(existsSync(info.netNamespacePath), `${when}: READY pod ${p.id} has its netns`);
    }
  }
  const podIds = new Set(pods.map((p) => p.id));
  for (const c of containers) {
    ids.add(c.id);
    assert.ok(podIds.has(c.podSandboxId), `${when}: container ${c.id} belongs to a listed pod`);
    if (c.state === ContainerState.CONTAINER_RUNNING) {
      const r = await env.d.rt.containerStatus({ containerId: c.id, verbose: true });
      const pid = (JSON.parse(r.info.info!) as { pid: number }).pid;
      assert.ok(alive(pid), `${when}: RUNNING container ${c.id} has its process ${pid}`);
    }
  }
  const listed = new Set([...podIds, ...containers.map((c) => c.id)]);
  const st = env.d.state;
  const owned = [
    ...entries(join(st, "netns")),
    ...entries(join(st, "pods")),
    ...entries(join(st, "bundles")),
    ...entries(join(st, "io")),
    ...entries(join(env.d.root, "network", "pods")),
  ];
  const unlisted = owned.filter((p) => !listed.has(basename(p).replace(/\.json$/, "")));
  assert.deepEqual(unlisted, [], `${when}: every per-id path belongs to a listed pod or container`);
  const ipam = join(env.d.dir, "ipam", `berth-test-${BRIDGE}`);
  const strayIps = entries(ipam)
    .filter((p) => /\/\d+\.\d+\.\d+\.\d+$/.test(p))
    .filter((p) => !podIds.has(readFileSync(p, "utf8").split(/\r?\n/)[0]!));
  assert.deepEqual(strayIps, [], `${when}: every reserved IP belongs to a listed pod`);
}

function entries(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir).map((n) => join(dir, n)) : [];
}

/** The start-up sweep's warnings in the current berthd's log: what it found left behind. */
function swept(): string[] {
  const out: string[] = [];
  for (const line of env.d.logs().split("\n")) {
    if (line.includes("killed a CNI plugin a previous berthd left running")) out.push("a running CNI plugin");
    if (!line.includes("removed a leftover no pod or container record owns")) continue;
    try {
      const o = (JSON.parse(line) as { orphan: { kind: string } }).orphan;
      out.push(o.kind);
    } catch {
      out.push(line.slice(0, 200));
    }
  }
  return out;
}

test("SIGKILL at random moments under pod churn leaves nothing behind", { timeout: 1_080_000 }, async () => {
  // One undisturbed cycle sets the scale of the random delays: kills land anywhere in a cycle.
  const t0 = Date.now();
  await podCycle("rk-probe");
  const cycleMs = Date.now() - t0;
  console.log(`one pod cycle takes ${cycleMs} ms here`);

  const failures: string[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const r: Round = { killed: false, ops: [], errors: [] };
    const delay = Math.floor(random() * cycleMs * 1.5);
    const clients = [client(r, 0, round, true), client(r, 1, round, false)];
    await sleep(delay);
    r.killed = true;
    env.d.kill("SIGKILL");
    await env.d.exited;
    await Promise.all(clients);
    await env.restart();
    const what = `round ${round}: killed after ${delay} ms (${r.ops.join("; ")})`;
    const sweptKinds = swept();
    console.log(`${what}${sweptKinds.length ? `; the sweep removed: ${sweptKinds.join(", ")}` : ""}`);
    failures.push(...r.errors.map((e) => `${what}: ${e}`));
    await assertConsistent(what);
  }
  assert.deepEqual(failures, [], "no CRI call failed while berthd was alive");

  await removeAllPods();
  assert.deepEqual((await env.d.rt.listContainers({})).containers, [], "no container left");
  const shims = await settledWarmShims(env.d);
  assert.ok(shims.length <= 1, `at most the one warm shim: ${JSON.stringify(shims)}`);
  const st = env.d.state;
  for (const dir of [
    join(st, "netns"),
    join(st, "pods"),
    join(st, "bundles"),
    join(st, "io"),
    join(env.d.root, "network", "pods"),
  ])
    assert.deepEqual(entries(dir), [], `${dir} is empty`);
  assert.deepEqual(daemonLeaks(env.d, { bridge: BRIDGE, ids }), [], "nothing of berth's left on the host");
});
