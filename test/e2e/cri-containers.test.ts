// Containers through berthd's CRI socket, as kubelet drives them (exec, logs, OOM, stats, events,
// and bad input): real runc, real CNI plugins on a private bridge, images pulled from a real
// registry. Pods, networking, namespaces and security contexts are in cri-pods.test.ts.
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, renameSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { status as grpcStatus } from "@grpc/grpc-js";
import { ContainerEventType, ContainerState, type ContainerEventResponse } from "../../src/gen/cri/runtime/v1/api.js";
import { sleep, until, type CriEnv } from "../helpers/cri.js";
import { useCriEnv } from "../helpers/cri-fixture.js";

let env: CriEnv;

useCriEnv({ bridge: "berthcri2", subnet: "10.234.2.0/24", pull: ["busybox", "busyboxUser"] }, (e) => (env = e));

function code(err: unknown): number {
  return (err as { code: number }).code;
}

describe("exec, logs, OOM, stats, events", () => {
  let pod: { id: string; config: Parameters<CriEnv["runContainer"]>[0]["config"] };
  before(async () => {
    pod = await env.runPod("misc");
  });
  after(async () => {
    await env.d.rt.removePodSandbox({ podSandboxId: pod.id });
  });

  test("a timed-out ExecSync returns in time with DEADLINE_EXCEEDED, and the process is killed", async () => {
    const cid = await env.runContainer(pod, "exec-timeout", ["sleep", "1000"]);
    const t0 = Date.now();
    await assert.rejects(
      env.d.rt.execSync({ containerId: cid, cmd: ["sleep", "60"], timeout: 2n }, { deadlineMs: 30_000 }),
      (e) => code(e) === grpcStatus.DEADLINE_EXCEEDED,
    );
    assert.ok(Date.now() - t0 < 20_000, "returned long before the command would have finished");
    await until(async () => {
      const ps = (
        await env.d.rt.execSync({ containerId: cid, cmd: ["ps", "-o", "args"], timeout: 10n })
      ).stdout.toString();
      return !ps.includes("sleep 60");
    }, "the timed-out exec process to be gone");
  });

  test("a 1 MB line and a line split by a log rotation arrive complete and in order", async () => {
    const script = [
      'head -c 1048576 /dev/zero | tr "\\0" a; echo',
      "i=0; while [ $i -lt 20 ]; do echo line$i; i=$((i+1)); done",
      "printf first-half-; sleep 3; echo second-half",
      "i=20; while [ $i -lt 40 ]; do echo line$i; i=$((i+1)); done",
      "sleep 1000",
    ].join("; ");
    const cid = await env.runContainer(pod, "logger", ["sh", "-c", script]);
    const logPath = (await env.d.rt.containerStatus({ containerId: cid })).status!.logPath;
    await until(() => readFileSync(logPath, "utf8").includes(" F line19\n"), "line19 in the log");
    renameSync(logPath, `${logPath}.1`);
    await env.d.rt.reopenContainerLog({ containerId: cid });
    await until(
      () => existsSync(logPath) && readFileSync(logPath, "utf8").includes(" F line39\n"),
      "line39 in the new log",
    );
    const records = (readFileSync(`${logPath}.1`, "utf8") + readFileSync(logPath, "utf8")).split("\n").filter(Boolean);
    const lines: string[] = [];
    let partial = "";
    for (const r of records) {
      const m = /^(\S+) (stdout|stderr) ([PF]) (.*)$/s.exec(r);
      assert.ok(m, `malformed record ${r.slice(0, 80)}`);
      partial += m[4];
      if (m[3] === "F") {
        lines.push(partial);
        partial = "";
      }
    }
    const expected = [
      "a".repeat(1048576),
      ...Array.from({ length: 20 }, (_, i) => `line${i}`),
      "first-half-second-half",
      ...Array.from({ length: 20 }, (_, i) => `line${i + 20}`),
    ];
    assert.equal(lines.length, expected.length);
    assert.deepEqual(lines, expected);
    assert.ok(
      readFileSync(logPath, "utf8").includes(" F first-half-second-half\n"),
      "the split line was finished in the new file",
    );
    await env.d.rt.reopenContainerLog({ containerId: cid });
  });

  test("a container over its memory limit is reported OOMKilled", async () => {
    const cid = await env.runContainer(pod, "oom", ["tail", "/dev/zero"], {
      linux: { resources: { memoryLimitInBytes: 32n * 1024n * 1024n } },
    });
    await until(
      async () =>
        (await env.d.rt.containerStatus({ containerId: cid })).status?.state === ContainerState.CONTAINER_EXITED,
      "OOM kill",
      60_000,
    );
    const cs = (await env.d.rt.containerStatus({ containerId: cid })).status!;
    assert.equal(cs.reason, "OOMKilled");
    assert.equal(cs.exitCode, 137);
  });

  test("stats, resource updates and container events", async () => {
    const events: ContainerEventResponse[] = [];
    const stream = env.d.runtime.getContainerEvents({});
    stream.on("data", (e: ContainerEventResponse) => events.push(e));
    stream.on("error", () => {});
    await sleep(200);
    const cid = await env.runContainer(pod, "stats", [
      "sh",
      "-c",
      "dd if=/dev/zero of=/tmp/blob bs=1M count=4; while true; do :; done",
    ]);
    await sleep(1500);
    const s = (await env.d.rt.containerStats({ containerId: cid })).stats!;
    assert.ok((s.cpu?.usageCoreNanoSeconds?.value ?? 0n) > 0n);
    assert.ok((s.memory?.workingSetBytes?.value ?? 0n) > 0n);
    assert.ok((s.writableLayer?.usedBytes?.value ?? 0n) >= 4n * 1024n * 1024n);
    const list = await env.d.rt.listContainerStats({ filter: { podSandboxId: pod.id } });
    assert.ok(list.stats.some((x) => x.attributes?.id === cid));
    const ps = (await env.d.rt.podSandboxStats({ podSandboxId: pod.id })).stats!;
    assert.ok((ps.linux?.cpu?.usageCoreNanoSeconds?.value ?? 0n) > 0n);
    assert.ok((await env.d.rt.listPodSandboxStats({})).stats.some((x) => x.attributes?.id === pod.id));

    await env.d.rt.updateContainerResources({
      containerId: cid,
      linux: { memoryLimitInBytes: 96n * 1024n * 1024n, cpuShares: 512n },
    });
    assert.equal(
      readFileSync(`/sys/fs/cgroup/memory/berth/${pod.id}/${cid}/memory.limit_in_bytes`, "utf8").trim(),
      String(96 * 1024 * 1024),
    );

    await env.d.rt.stopContainer({ containerId: cid, timeout: 0n });
    await env.d.rt.removeContainer({ containerId: cid });
    const evPod = await env.runPod("events-pod");
    await env.d.rt.removePodSandbox({ podSandboxId: evPod.id });
    await until(() => events.filter((e) => e.containerId === cid).length >= 4, "four events");
    await until(() => events.filter((e) => e.containerId === evPod.id).length >= 4, "four pod events");
    assert.deepEqual(
      events.filter((e) => e.containerId === evPod.id).map((e) => e.containerEventType),
      [
        ContainerEventType.CONTAINER_CREATED_EVENT,
        ContainerEventType.CONTAINER_STARTED_EVENT,
        ContainerEventType.CONTAINER_STOPPED_EVENT,
        ContainerEventType.CONTAINER_DELETED_EVENT,
      ],
    );
    stream.cancel();
    const mine = events.filter((e) => e.containerId === cid);
    assert.deepEqual(
      mine.map((e) => e.containerEventType),
      [
        ContainerEventType.CONTAINER_CREATED_EVENT,
        ContainerEventType.CONTAINER_STARTED_EVENT,
        ContainerEventType.CONTAINER_STOPPED_EVENT,
        ContainerEventType.CONTAINER_DELETED_EVENT,
      ],
    );
    assert.equal(mine[0]!.podSandboxStatus?.id, pod.id);
    assert.equal(mine[2]!.containersStatuses[0]?.state, ContainerState.CONTAINER_EXITED);
  });
});

describe("bad input gets the right code and leaves nothing behind", () => {
  test("image not present, mount host path missing, duplicate names, unknown ids, unknown runtime handler", async () => {
    const before = env.leftovers();
    const bundlesBefore = readdirSync(join(env.d.state, "bundles")).length;
    await assert.rejects(
      env.runPod("bad-handler", {}, "no-such-handler"),
      (e) => code(e) === grpcStatus.NOT_FOUND && /no-such-handler/.test((e as Error).message),
    );
    assert.equal((await env.d.rt.listPodSandbox({})).items.filter((p) => p.metadata?.name === "bad-handler").length, 0);

    const pod = await env.runPod("bad");
    await assert.rejects(env.runPod("bad"), (e) => code(e) === grpcStatus.ALREADY_EXISTS);
    await assert.rejects(
      env.d.rt.createContainer({
        podSandboxId: pod.id,
        config: env.containerConfig("noimage", ["true"], { image: { image: "127.0.0.1:1/absent:1" } }),
      }),
      (e) => code(e) === grpcStatus.NOT_FOUND && /pull it first/.test((e as Error).message),
    );
    await assert.rejects(
      env.d.rt.createContainer({
        podSandboxId: pod.id,
        config: env.containerConfig("nomount", ["true"], {
          mounts: [{ containerPath: "/data", hostPath: "/no/such/berth/path" }],
        }),
      }),
      (e) => code(e) === grpcStatus.INVALID_ARGUMENT,
    );
    await env.d.rt.createContainer({ podSandboxId: pod.id, config: env.containerConfig("twice", ["true"]) });
    await assert.rejects(
      env.d.rt.createContainer({ podSandboxId: pod.id, config: env.containerConfig("twice", ["true"]) }),
      (e) => code(e) === grpcStatus.ALREADY_EXISTS,
    );
    assert.deepEqual(
      (await env.d.rt.listContainers({ filter: { podSandboxId: pod.id } })).containers.map((c) => c.metadata?.name),
      ["twice"],
    );
    assert.equal(
      readdirSync(join(env.d.state, "bundles")).length,
      bundlesBefore + 2,
      "only the pod's and the one container's bundles were added",
    );

    await assert.rejects(
      env.d.rt.containerStatus({ containerId: "0123456789abcdef" }),
      (e) => code(e) === grpcStatus.NOT_FOUND,
    );
    await assert.rejects(
      env.d.rt.podSandboxStatus({ podSandboxId: "0123456789abcdef" }),
      (e) => code(e) === grpcStatus.NOT_FOUND,
    );
    await assert.rejects(
      env.d.rt.startContainer({ containerId: "0123456789abcdef" }),
      (e) => code(e) === grpcStatus.NOT_FOUND,
    );
    // stop and remove of what does not exist succeed (CRI: idempotent), as containerd
    await env.d.rt.stopPodSandbox({ podSandboxId: "0123456789abcdef" });
    await env.d.rt.stopContainer({ containerId: "0123456789abcdef", timeout: 0n });
    await env.d.rt.removeContainer({ containerId: "0123456789abcdef" });

    await env.d.rt.removePodSandbox({ podSandboxId: pod.id });
    assert.deepEqual(env.leftovers(), before);
  });
});
