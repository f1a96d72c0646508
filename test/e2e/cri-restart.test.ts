// berthd killed with SIGKILL while pods run, then started again on the same root and state:
// the same pods and containers in their true states, the real exit code of a container that
// exited meanwhile, running containers untouched with their logs still flowing, and work a
// crash interrupted finished or rolled back. Also: containerd's own runc shim as a runtime
// handler, of both generations (Debian's 1.6, and 2.4's built from the module proxy, which
// wants the bootstrap protocol on start and serves the task API v3).
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { after, before, test } from "node:test";
import Database from "better-sqlite3";
import { ContainerState, PodSandboxState } from "../../src/gen/cri/runtime/v1/api.js";
import { sleep, startCriEnv, testImages, until, type CriEnv } from "../helpers/cri.js";
import { goTool } from "../helpers/go-tools.js";

let env: CriEnv;

before(async () => {
  // containerd 2.4's runc shim, named by its absolute path as runtime_type allows.
  const runc24 = goTool("containerd-2.4", "containerd-shim-runc-v2");
  env = await startCriEnv({
    bridge: "berthcri1",
    subnet: "10.234.1.0/24",
    config: `
[runtime.handlers.runc-v2-2-4]
runtime_type = "${runc24}"
binary_name = "runc"
root = "{{dir}}/runc-v2-2-4"
`,
  });
  await env.d.img.pullImage({ image: { image: env.images.busybox } }, { deadlineMs: 120_000 });
});

after(async () => {
  await env?.stop();
  await (await testImages()).stop();
});

const ticker = ["sh", "-c", "i=0; while true; do echo tick$i; i=$((i+1)); sleep 0.1; done"];

function ticks(path: string): number[] {
  return [...readFileSync(path, "utf8").matchAll(/ stdout F tick(\d+)$/gm)].map((m) => Number(m[1]));
}

async function pidOf(cid: string): Promise<number> {
  const r = await env.d.rt.containerStatus({ containerId: cid, verbose: true });
  return (JSON.parse(r.info.info!) as { pid: number }).pid;
}

const shims: Record<string, string> = {
  runc: "berth shim",
  "runc-v2": "containerd 1.6's containerd-shim-runc-v2",
  "runc-v2-2-4": "containerd 2.4's containerd-shim-runc-v2",
};

for (const [handler, shim] of Object.entries(shims)) {
  test(`restart after SIGKILL keeps pods and containers true (${shim})`, async () => {
    const pod = await env.runPod(`restart-${handler}`, {}, handler);
    const doomed = await env.runPod(`interrupted-${handler}`, {}, handler);
    const runner = await env.runContainer(pod, "runner", ticker);
    const exiter = await env.runContainer(pod, "exiter", ["sh", "-c", "sleep 3; exit 42"]);
    const removing = await env.runContainer(pod, "half-removed", ["sleep", "1000"]);
    const runnerLog = (await env.d.rt.containerStatus({ containerId: runner })).status!.logPath;
    const pid = await pidOf(runner);
    await until(() => ticks(runnerLog).length > 3, "first ticks");

    env.d.kill("SIGKILL");
    await env.d.exited;
    // What a crash in the middle of RunPodSandbox / RemoveContainer leaves behind.
    const db = new Database(join(env.d.root, "metadata.db"));
    db.prepare(`UPDATE pods SET phase = 'creating' WHERE id = ?`).run(doomed.id);
    db.prepare(`UPDATE containers SET phase = 'removing' WHERE id = ?`).run(removing);
    db.close();
    await sleep(4000); // the exiter exits while berthd is down
    await env.restart();

    const pods = (await env.d.rt.listPodSandbox({})).items.map((p) => p.id);
    assert.ok(pods.includes(pod.id));
    assert.ok(!pods.includes(doomed.id), "the interrupted RunPodSandbox was rolled back");
    assert.equal(
      (await env.d.rt.podSandboxStatus({ podSandboxId: pod.id })).status?.state,
      PodSandboxState.SANDBOX_READY,
    );

    const list = (await env.d.rt.listContainers({ filter: { podSandboxId: pod.id } })).containers;
    assert.deepEqual(list.map((c) => c.id).sort(), [runner, exiter].sort(), "the half-removed container is gone");
    const rs = (await env.d.rt.containerStatus({ containerId: runner })).status!;
    assert.equal(rs.state, ContainerState.CONTAINER_RUNNING);
    assert.equal(await pidOf(runner), pid, "the running container kept running");
    const es = await until(async () => {
      const s = (await env.d.rt.containerStatus({ containerId: exiter })).status!;
      return s.state === ContainerState.CONTAINER_EXITED ? s : undefined;
    }, "the exiter's exit");
    assert.equal(es.exitCode, 42);
    assert.equal(es.reason, "Error");

    // Logs keep flowing, with no record lost or reordered across the restart.
    const before = ticks(runnerLog).length;
    await until(() => ticks(runnerLog).length > before + 10, "ticks after the restart");
    const t = ticks(runnerLog);
    assert.deepEqual(
      t,
      t.map((_, i) => i),
      "tick lines are complete and in order",
    );

    const r = await env.d.rt.execSync({ containerId: runner, cmd: ["echo", "still here"], timeout: 10n });
    assert.equal(r.stdout.toString(), "still here\n");
    await env.d.rt.stopPodSandbox({ podSandboxId: pod.id });
    await env.d.rt.removePodSandbox({ podSandboxId: pod.id });
    assert.deepEqual(env.leftovers(), []);
  });
}

test("after a restart a pod's containers still join its namespaces; a removed container leaves no mount or dir; a trash a killed berthd left is emptied at start", async () => {
  const pod = await env.runPod("trash");
  env.d.kill("SIGKILL");
  await env.d.exited;
  await env.restart();
  // CreateContainer names the sandbox's namespaces by its pid, which recovery learnt again.
  const cid = await env.runContainer(pod, "short", ["sleep", "1000"]);
  const hostname = await env.d.rt.execSync({ containerId: cid, cmd: ["hostname"], timeout: 10n });
  assert.equal(hostname.stdout.toString(), "trash\n", "the container is in the pod's UTS namespace");

  const bundle = join(env.d.state, "bundles", cid);
  const rootfs = join(bundle, "rootfs");
  const mountOf = () =>
    readFileSync("/proc/self/mountinfo", "utf8")
      .split("\n")
      .find((l) => l.split(" ")[4] === rootfs);
  const mount = mountOf();
  assert.ok(mount, "the rootfs is mounted while the container runs");
  const upper = /upperdir=([^,\s]+)/.exec(mount)?.[1];
  assert.ok(upper, `an overlay rootfs: ${mount}`);
  const snapshot = dirname(upper);
  assert.ok(existsSync(snapshot));
  await env.d.rt.stopContainer({ containerId: cid, timeout: 0n });
  assert.equal(mountOf(), undefined, "the rootfs is unmounted once the container's task is deleted");
  await env.d.rt.removeContainer({ containerId: cid });
  for (const p of [bundle, join(env.d.state, "io", cid), snapshot]) assert.equal(existsSync(p), false, `${p} is left`);

  // What berthd moved to its trash and was killed before deleting.
  const trash = join(env.d.state, "trash");
  mkdirSync(join(trash, "left-by-a-crash", "rootfs", "etc"), { recursive: true });
  writeFileSync(join(trash, "left-by-a-crash", "config.json"), "{}");
  env.d.kill("SIGKILL");
  await env.d.exited;
  await env.restart();
  assert.deepEqual(readdirSync(trash), [], "the trash is emptied before berthd serves");
  await env.d.rt.stopPodSandbox({ podSandboxId: pod.id });
  await env.d.rt.removePodSandbox({ podSandboxId: pod.id });
  assert.deepEqual(env.leftovers(), []);
});
