// StartContainer with no NRI plugin: berth's shim creates and starts the task in one runtime
// command (`runc run --detach`) and berthd's Start only confirms it. What kubelet sees stays as
// with create then start: a container that exits at once is EXITED with its code, its output in
// the log and its start before its finish; a command that cannot run is EXITED 128 StartError
// with runc's message and leaves nothing behind. The shim's log tells which path was taken (the
// NRI case, two steps, is in cri-nri.test.ts).
import assert from "node:assert/strict";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { ContainerState } from "../../src/gen/cri/runtime/v1/api.js";
import { until, type CriEnv } from "../helpers/cri.js";
import { useCriEnv } from "../helpers/cri-fixture.js";

let env: CriEnv;

useCriEnv({ bridge: "berthsao0", subnet: "10.234.94.0/24", pull: ["busybox"] }, (e) => (env = e));

/** Every line the serving shims logged (the group logs under berthd's shim dir). */
function shimLog(): string {
  const dir = join(env.d.state, "shim");
  return readdirSync(dir)
    .filter((f) => f.endsWith(".log"))
    .map((f) => readFileSync(join(dir, f), "utf8"))
    .join("");
}

/** Pids of processes whose command line names `word`. */
function processesNaming(word: string): number[] {
  const out: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (readFileSync(`/proc/${name}/cmdline`, "utf8").includes(word)) out.push(Number(name));
    } catch {
      // gone
    }
  }
  return out;
}

describe("StartContainer in one runtime command", () => {
  let pod: { id: string; config: Parameters<CriEnv["runContainer"]>[0]["config"] };
  before(async () => {
    pod = await env.runPod("at-once");
  });
  after(async () => {
    await env.d.rt.stopPodSandbox({ podSandboxId: pod.id });
    await env.d.rt.removePodSandbox({ podSandboxId: pod.id });
  });

  test("the pause and a container are each created and run by one runtime command", async () => {
    const cid = await env.runContainer(pod, "runs", ["sleep", "1000"]);
    const log = shimLog();
    assert.match(log, new RegExp(`\\[${pod.id}\\] created and ran pid \\d+`));
    assert.match(log, new RegExp(`\\[${cid}\\] created and ran pid \\d+`));
    const st = (await env.d.rt.containerStatus({ containerId: cid })).status!;
    assert.equal(st.state, ContainerState.CONTAINER_RUNNING);
    const r = await env.d.rt.execSync({ containerId: cid, cmd: ["echo", "in"], timeout: 10n });
    assert.equal(r.stdout.toString(), "in\n");
    await env.d.rt.stopContainer({ containerId: cid, timeout: 0n });
    await env.d.rt.removeContainer({ containerId: cid });
  });

  test("a container that exits at once is EXITED with its code, its output logged, started before it finished", async () => {
    const cid = await env.runContainer(pod, "quick", ["sh", "-c", "echo out; echo err >&2; exit 7"]);
    const st = await until(async () => {
      const s = (await env.d.rt.containerStatus({ containerId: cid })).status!;
      return s.state === ContainerState.CONTAINER_EXITED ? s : undefined;
    }, "the container to be reported exited");
    assert.equal(st.exitCode, 7);
    assert.equal(st.reason, "Error");
    assert.ok(st.startedAt > 0n && st.startedAt <= st.finishedAt, `started ${st.startedAt}, finished ${st.finishedAt}`);
    const lines = readFileSync(join(env.logDir, "at-once", "quick.log"), "utf8")
      .trim()
      .split("\n");
    assert.deepEqual(lines.map((l) => l.split(" ").slice(1).join(" ")).sort(), ["stderr F err", "stdout F out"]);
    await env.d.rt.removeContainer({ containerId: cid });
  });

  test("a command that cannot run fails StartContainer: EXITED 128 StartError with runc's message, nothing left", async () => {
    const before = env.leftovers();
    const { containerId: cid } = await env.d.rt.createContainer({
      podSandboxId: pod.id,
      config: env.containerConfig("broken", ["/no/such/command"]),
      sandboxConfig: pod.config,
    });
    await assert.rejects(env.d.rt.startContainer({ containerId: cid }), /no such file or directory/);
    const st = (await env.d.rt.containerStatus({ containerId: cid })).status!;
    assert.equal(st.state, ContainerState.CONTAINER_EXITED);
    assert.equal(st.exitCode, 128);
    assert.equal(st.reason, "StartError");
    assert.match(st.message, /no such file or directory/);
    // No runc container and no monitor is left for it.
    assert.equal(existsSync(join("/run/berth/runc/k8s.io", cid)), false);
    assert.deepEqual(processesNaming(cid), []);
    await env.d.rt.removeContainer({ containerId: cid });
    assert.deepEqual(env.leftovers(), before);
  });
});
