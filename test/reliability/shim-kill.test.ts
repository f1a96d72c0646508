// A shim killed with SIGKILL (issue 8, reliability). berth's documented behaviour
// (src/runtime/manager.ts, header and onConnectionClosed): for berth's own shim the manager
// starts the shim again, which re-adopts the monitors that outlived it, so the containers keep
// running under the same pids; for any other shim (containerd-shim-runc-v2) every task of the
// dead shim is reported exited (255) with a reason naming the shim. In both cases the pod can
// then be removed and nothing of it remains.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { ContainerState } from "../../src/gen/cri/runtime/v1/api.js";
import { containerPid, ppid, until, type CriEnv } from "../helpers/cri.js";
import { useCriEnv } from "../helpers/cri-fixture.js";
import { daemonLeaks, processesNaming, settledWarmShims } from "../helpers/leaks.js";

let env: CriEnv;

useCriEnv({ bridge: "berthrel2", subnet: "10.234.22.0/24" }, (e) => (env = e));

const pidOf = (cid: string) => containerPid(env, cid);

function cmdline(pid: number): string {
  return readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ");
}

const isShim = (cmd: string) => cmd.includes("containerd-shim") || cmd.includes("shim/main.js");

/** The shim above a container's process: up the parent chain (through berth's monitor). */
function shimOf(pid: number): number {
  for (let p = ppid(pid); p > 1; p = ppid(p)) if (isShim(cmdline(p))) return p;
  throw new Error(`no shim above pid ${pid}`);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

for (const handler of ["runc", "runc-v2"]) {
  const berthShim = handler === "runc";
  test(`SIGKILL of the shim (${berthShim ? "berth shim: restarted, containers re-adopted" : "containerd-shim-runc-v2: containers reported exited"}), then the pod is removed`, async () => {
    const pod = await env.runPod(`shimkill-${handler}`, {}, handler);
    const a = await env.runContainer(pod, "a", ["sleep", "1000"]);
    const b = await env.runContainer(pod, "b", ["sh", "-c", "while true; do sleep 0.2; done"]);
    const pidA = await pidOf(a);
    const pidB = await pidOf(b);
    const shim = shimOf(pidA);
    assert.equal(shimOf(pidB), shim, "one shim serves the pod");

    process.kill(shim, "SIGKILL");
    await until(() => !alive(shim), "the shim to die", 5000);
    const t0 = Date.now();

    if (berthShim) {
      // A new shim serves the same socket and re-adopts both containers.
      const next = await until(
        () => {
          const s = processesNaming([env.d.socket], [env.d.pid]).find(
            (p) => p.cmd.includes("-berth-serve") && p.pid !== shim,
          );
          return s && alive(pidA) ? s : undefined;
        },
        "a restarted shim",
        10_000,
      );
      assert.notEqual(next.pid, shim);
      for (const [cid, pid] of [
        [a, pidA],
        [b, pidB],
      ] as const) {
        const s = (await env.d.rt.containerStatus({ containerId: cid })).status!;
        assert.equal(s.state, ContainerState.CONTAINER_RUNNING, `${cid} still running`);
        assert.equal(await pidOf(cid), pid, "same process, re-adopted");
      }
      const r = await env.d.rt.execSync({ containerId: b, cmd: ["echo", "adopted"], timeout: 10n });
      assert.equal(r.stdout.toString(), "adopted\n");
      // The restarted shim still reports exits of adopted containers.
      process.kill(pidA, "SIGKILL");
      const s = await until(
        async () => {
          const st = (await env.d.rt.containerStatus({ containerId: a })).status!;
          return st.state === ContainerState.CONTAINER_EXITED ? st : undefined;
        },
        "the adopted container's exit",
        10_000,
      );
      assert.equal(s.exitCode, 137);
    } else {
      for (const cid of [a, b]) {
        const s = await until(
          async () => {
            const st = (await env.d.rt.containerStatus({ containerId: cid })).status!;
            return st.state === ContainerState.CONTAINER_EXITED || st.state === ContainerState.CONTAINER_UNKNOWN
              ? st
              : undefined;
          },
          `${cid} reported exited`,
          10_000,
        );
        const text = `${s.reason} ${s.message}`;
        assert.match(text, /shim/i, `the reason names the shim: ${text}`);
        assert.ok(s.exitCode !== 0, "not a clean exit");
      }
      console.log(`containers reported exited ${Date.now() - t0} ms after the shim died`);
    }

    await env.d.rt.stopPodSandbox({ podSandboxId: pod.id }, { deadlineMs: 60_000 });
    await env.d.rt.removePodSandbox({ podSandboxId: pod.id }, { deadlineMs: 60_000 });
    assert.deepEqual((await env.d.rt.listContainers({ filter: { podSandboxId: pod.id } })).containers, []);
    for (const pid of [pidA, pidB]) {
      if (!alive(pid)) continue;
      console.log(`after RemovePodSandbox: pid ${pid} alive: ${cmdline(pid)} parent ${ppid(pid)}`);
      await until(() => !alive(pid), `container process ${pid} to be gone`, 5000);
    }
    const shims = await settledWarmShims(env.d);
    assert.ok(shims.length <= 1, `at most the one warm shim: ${JSON.stringify(shims)}`);
    assert.deepEqual(daemonLeaks(env.d, { bridge: "berthrel2", ids: [pod.id, a, b] }), []);
  });
}
