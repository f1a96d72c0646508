// Pods and containers through berthd's CRI socket, as kubelet drives them: real runc, real
// CNI plugins on a private bridge, images pulled from a real registry.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { status as grpcStatus } from "@grpc/grpc-js";
import { ContainerState, PodSandboxState } from "../src/gen/cri/runtime/v1/api.js";
import { startCriEnv, until, type CriEnv } from "./helpers/cri.js";

let env: CriEnv;

before(async () => {
  env = await startCriEnv({ bridge: "berthcri0", subnet: "10.234.0.0/24" });
  await env.d.img.pullImage({ image: { image: env.images.busybox } }, { deadlineMs: 120_000 });
  await env.d.img.pullImage({ image: { image: env.images.busyboxUser } }, { deadlineMs: 120_000 });
});

after(async () => {
  await env?.stop();
  await (await import("./helpers/cri.js")).testImages().then((i) => i.stop());
});

function code(err: unknown): number {
  return (err as { code: number }).code;
}

describe("pod and container lifecycle", () => {
  test("a pod runs, a container in it logs, exits with its code, and everything goes away", async () => {
    const pod = await env.runPod("life");
    const st = await env.d.rt.podSandboxStatus({ podSandboxId: pod.id, verbose: true });
    assert.equal(st.status?.state, PodSandboxState.SANDBOX_READY);
    assert.match(st.status?.network?.ip ?? "", /^10\.234\.0\.\d+$/);
    assert.equal(st.status?.metadata?.name, "life");
    assert.ok(JSON.parse(st.info.info!).pid > 0);

    // short ids resolve
    const short = await env.d.rt.podSandboxStatus({ podSandboxId: pod.id.slice(0, 12) });
    assert.equal(short.status?.id, pod.id);

    const cid = await env.runContainer(pod, "echo", ["sh", "-c", "echo out; echo err >&2; exit 3"]);
    await until(async () => (await env.d.rt.containerStatus({ containerId: cid })).status?.state === ContainerState.CONTAINER_EXITED, "container exit");
    const cs = (await env.d.rt.containerStatus({ containerId: cid })).status!;
    assert.equal(cs.exitCode, 3);
    assert.equal(cs.reason, "Error");
    assert.ok(cs.startedAt > 0n && cs.finishedAt >= cs.startedAt, `started ${cs.startedAt} finished ${cs.finishedAt}`);
    assert.equal(cs.logPath, join(env.logDir, "life", "echo.log"));
    const log = readFileSync(cs.logPath, "utf8");
    assert.match(log, /^\S+ stdout F out$/m);
    assert.match(log, /^\S+ stderr F err$/m);

    const list = await env.d.rt.listContainers({ filter: { podSandboxId: pod.id } });
    assert.deepEqual(list.containers.map((c) => c.id), [cid]);

    await env.d.rt.stopPodSandbox({ podSandboxId: pod.id });
    await env.d.rt.stopPodSandbox({ podSandboxId: pod.id }); // idempotent
    const stopped = await env.d.rt.podSandboxStatus({ podSandboxId: pod.id });
    assert.equal(stopped.status?.state, PodSandboxState.SANDBOX_NOTREADY);
    await env.d.rt.removePodSandbox({ podSandboxId: pod.id });
    await env.d.rt.removePodSandbox({ podSandboxId: pod.id }); // already removed: OK
    await assert.rejects(env.d.rt.containerStatus({ containerId: cid }), (e) => code(e) === grpcStatus.NOT_FOUND);
    assert.deepEqual(env.leftovers(), []);
  });

  test("a running container is stopped with the image's stop signal, exec works in it, and it is removed", async () => {
    const pod = await env.runPod("runner");
    const cid = await env.runContainer(pod, "trapper", ["sh", "-c", 'trap "echo got USR1; exit 5" USR1; echo ready; while true; do sleep 0.2; done'], {
      image: { image: env.images.busyboxUser },
    });
    assert.equal((await env.d.rt.containerStatus({ containerId: cid })).status?.state, ContainerState.CONTAINER_RUNNING);
    const r = await env.d.rt.execSync({ containerId: cid, cmd: ["sh", "-c", "echo hi; echo oops >&2; exit 7"], timeout: 10n });
    assert.equal(r.stdout.toString(), "hi\n");
    assert.equal(r.stderr.toString(), "oops\n");
    assert.equal(r.exitCode, 7);
    await env.d.rt.stopContainer({ containerId: cid, timeout: 20n });
    const cs = (await env.d.rt.containerStatus({ containerId: cid })).status!;
    assert.equal(cs.state, ContainerState.CONTAINER_EXITED);
    assert.equal(cs.exitCode, 5, "the image's STOPSIGNAL (SIGUSR1) was sent first");
    assert.match(readFileSync(cs.logPath, "utf8"), /stdout F got USR1/);
    await env.d.rt.stopContainer({ containerId: cid, timeout: 10n }); // idempotent

    // pid 1 ignores SIGTERM without a handler: SIGKILL follows after the timeout.
    const stubborn = await env.runContainer(pod, "stubborn", ["sleep", "1000"]);
    await env.d.rt.stopContainer({ containerId: stubborn, timeout: 1n });
    const ss = (await env.d.rt.containerStatus({ containerId: stubborn })).status!;
    assert.equal(ss.exitCode, 137);
    assert.equal(ss.reason, "Error");

    await env.d.rt.removeContainer({ containerId: cid });
    await env.d.rt.removeContainer({ containerId: cid });
    // removing a running container stops it first
    const running = await env.runContainer(pod, "running", ["sleep", "1000"]);
    await env.d.rt.removeContainer({ containerId: running });
    await assert.rejects(env.d.rt.containerStatus({ containerId: running }), (e) => code(e) === grpcStatus.NOT_FOUND);
    await env.d.rt.removePodSandbox({ podSandboxId: pod.id });
  });
});
    assert.equal(r.stdout.toString(), "hi\n");
    assert.equal(r.stderr.toString(), "oops\n");
    assert.equal(r.exitCode, 7);
    await env.d.rt.stopContainer({ containerId: cid, timeout: 10n });
    const cs = (await env.d.rt.containerStatus({ containerId: cid })).status!;
    assert.equal(cs.state, ContainerState.CONTAINER_EXITED);
    assert.equal(cs.exitCode, 143); // SIGTERM
    await env.d.rt.stopContainer({ containerId: cid, timeout: 10n }); // idempotent
    await env.d.rt.removeContainer({ containerId: cid });
    await env.d.rt.removeContainer({ containerId: cid });
    await env.d.rt.removePodSandbox({ podSandboxId: pod.id });
  });
});
