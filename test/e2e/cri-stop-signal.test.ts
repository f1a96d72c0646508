// Stop signals (KEP-4960) through the CRI with real runc: a container created with
// stop_signal SIGUSR1 gets SIGUSR1 on StopContainer (its trap's exit code proves it), and
// ContainerStatus reports the signal, also after berthd was SIGKILLed and started again. Without
// stop_signal the status reports SIGTERM (busybox has no STOPSIGNAL). An out-of-enum value is
// INVALID_ARGUMENT and leaves nothing.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { status as grpcStatus } from "@grpc/grpc-js";
import { ContainerState, Signal } from "../../src/gen/cri/runtime/v1/api.js";
import { until, type CriEnv } from "../helpers/cri.js";
import { useCriEnv } from "../helpers/cri-fixture.js";

let env: CriEnv;

useCriEnv({ bridge: "berthsig0", subnet: "10.234.80.0/24" }, (e) => (env = e));

// The trap runs between two sleeps; "ready" is logged once it is installed.
const trapper = ["sh", "-c", 'trap "echo got-usr1; exit 42" USR1; echo ready; while true; do sleep 0.1; done'];

test("stop_signal SIGUSR1 is sent by StopContainer and reported, also after a berthd restart", async () => {
  const pod = await env.runPod("stop-signal");
  const cid = await env.runContainer(pod, "usr1", trapper, { stopSignal: Signal.SIGNAL_SIGUSR1 });
  const plain = await env.runContainer(pod, "plain", ["sleep", "1000"]);
  const logPath = (await env.d.rt.containerStatus({ containerId: cid })).status!.logPath;
  await until(() => readFileSync(logPath, "utf8").includes("ready"), "the trap installed");

  assert.equal((await env.d.rt.containerStatus({ containerId: cid })).status!.stopSignal, Signal.SIGNAL_SIGUSR1);
  assert.equal((await env.d.rt.containerStatus({ containerId: plain })).status!.stopSignal, Signal.SIGNAL_SIGTERM);

  env.d.kill("SIGKILL");
  await env.restart();
  assert.equal((await env.d.rt.containerStatus({ containerId: cid })).status!.stopSignal, Signal.SIGNAL_SIGUSR1);

  // A long timeout: only the stop signal can end it before SIGKILL would (exit 137).
  await env.d.rt.stopContainer({ containerId: cid, timeout: 60n }, { deadlineMs: 90_000 });
  const s = (await env.d.rt.containerStatus({ containerId: cid })).status!;
  assert.equal(s.state, ContainerState.CONTAINER_EXITED);
  assert.equal(s.exitCode, 42, "exited through the USR1 trap");
  assert.equal(s.stopSignal, Signal.SIGNAL_SIGUSR1);
  assert.match(readFileSync(logPath, "utf8"), /stdout F got-usr1$/m);

  await env.d.rt.stopPodSandbox({ podSandboxId: pod.id }, { deadlineMs: 120_000 });
  await env.d.rt.removePodSandbox({ podSandboxId: pod.id }, { deadlineMs: 120_000 });
});

test("a stop_signal outside the enum is INVALID_ARGUMENT and leaves no container", async () => {
  const pod = await env.runPod("stop-signal-bad");
  const config = env.containerConfig("bad", ["sleep", "1"], { stopSignal: 99 as Signal });
  await assert.rejects(
    env.d.rt.createContainer({ podSandboxId: pod.id, config, sandboxConfig: pod.config }),
    (e: { code: number; details: string }) => e.code === grpcStatus.INVALID_ARGUMENT && /stop signal/.test(e.details),
  );
  assert.deepEqual((await env.d.rt.listContainers({ filter: { podSandboxId: pod.id } })).containers, []);
  await env.d.rt.stopPodSandbox({ podSandboxId: pod.id }, { deadlineMs: 120_000 });
  await env.d.rt.removePodSandbox({ podSandboxId: pod.id }, { deadlineMs: 120_000 });
});
