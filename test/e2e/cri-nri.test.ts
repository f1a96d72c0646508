// NRI through the CRI with a real plugin: test/go/nri-plugin is built on containerd/nri's own
// stub (what NRI plugins use). berthd synchronizes it with the pods it already has, relays every
// pod and container event in order, applies its container adjustments (env added and removed,
// annotation, read-only bind mount, rlimit, pids limit) so the container really runs with them,
// passes UpdateContainerResources through it, shows its adjustments to it as a validator, turns
// its refusal or its validator's rejection into FAILED_PRECONDITION with nothing left behind,
// carries on without it once it disconnects, and on shutdown tells a connected plugin (Shutdown)
// before closing it. A container the plugin hears StartContainer for is created, then started
// after the plugin answered (no one-step start). critest's NRI specs (test/e2e/critest.test.ts)
// check the hook contracts.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { after, before, test } from "node:test";
import { status as grpcStatus } from "@grpc/grpc-js";
import { startCriEnv, testImages, until, type CriEnv } from "../helpers/cri.js";
import { goTool } from "../helpers/go-tools.js";

let env: CriEnv;

interface PluginEvent {
  event: string;
  pod: string;
  container: string;
}

let plugin: ChildProcess | undefined;
const events: PluginEvent[] = [];
let mountSource: string;
let existingPod: { id: string; config: object };

/** Starts the Go plugin and waits until it has been synchronized. */
async function startPlugin(): Promise<void> {
  const bin = goTool("nri-plugin", "nri-test-plugin");
  const p = spawn(bin, ["-socket", join(env.d.dir, "nri", "nri.sock"), "-mount-source", mountSource], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  plugin = p;
  let stderr = "";
  p.stderr!.on("data", (b: Buffer) => (stderr += b.toString()));
  createInterface({ input: p.stdout! }).on("line", (line) => events.push(JSON.parse(line) as PluginEvent));
  await until(
    () => events.some((e) => e.event === "ready") || p.exitCode !== null,
    "the NRI plugin to be synchronized",
  );
  assert.equal(p.exitCode, null, `the NRI plugin exited: ${stderr}`);
}

before(async () => {
  env = await startCriEnv({
    bridge: "berthnri0",
    subnet: "10.234.93.0/24",
    config: `
[nri]
enable = true
socket_path = "{{dir}}/nri/nri.sock"
plugin_request_timeout = "30s"
`,
  });
  await env.d.img.pullImage({ image: { image: env.images.busybox } }, { deadlineMs: 120_000 });
  mountSource = join(env.d.dir, "nri-src");
  mkdirSync(mountSource);
  writeFileSync(join(mountSource, "hello"), "from the host\n");
  // A pod that exists before the plugin connects: it must be in the plugin's Synchronize.
  existingPod = await env.runPod("nri-before");
  await startPlugin();
});

after(async () => {
  try {
    plugin?.kill("SIGKILL");
    await env?.stop();
  } finally {
    await (await testImages()).stop();
  }
});

async function exec(cid: string, cmd: string[]): Promise<string> {
  const r = await env.d.rt.execSync({ containerId: cid, cmd, timeout: 10n });
  assert.equal(r.exitCode, 0, r.stderr.toString());
  return r.stdout.toString();
}

const of = (id: string) => events.filter((e) => e.container === id || (e.container === "" && e.pod === id));

test("the NRI socket is 0600 in a 0711 directory", () => {
  const socket = join(env.d.dir, "nri", "nri.sock");
  assert.ok(statSync(socket).isSocket());
  assert.equal(statSync(socket).mode & 0o777, 0o600);
  assert.equal(statSync(dirname(socket)).mode & 0o777, 0o711);
});

test("a joining plugin is synchronized with the pods that exist", () => {
  assert.ok(
    events.some((e) => e.event === "Synchronize" && e.pod === existingPod.id),
    `pod ${existingPod.id} in the plugin's Synchronize: ${JSON.stringify(events)}`,
  );
});

test("the plugin's adjustments reach the running container, and it hears every event in order", async () => {
  const pod = await env.runPod("nri-adjust", { annotations: { "berth.test/nri-adjust": "1" } });
  const cid = await env.runContainer(pod, "adjusted", ["sleep", "1000"], {
    envs: [
      { key: "DROP_ME", value: Buffer.from("x") },
      { key: "KEEP_ME", value: Buffer.from("y") },
    ],
  });
  const envOut = await exec(cid, ["env"]);
  assert.match(envOut, /^NRI_ADJUSTED=1$/m);
  assert.match(envOut, /^KEEP_ME=y$/m);
  assert.doesNotMatch(envOut, /DROP_ME/, "the plugin removed DROP_ME");
  assert.equal(await exec(cid, ["cat", "/nri-mount/hello"]), "from the host\n");
  const write = await env.d.rt.execSync({ containerId: cid, cmd: ["touch", "/nri-mount/new"], timeout: 10n });
  assert.notEqual(write.exitCode, 0, "the plugin's mount is read-only");
  assert.equal(await exec(cid, ["sh", "-c", "ulimit -n"]), "1234\n");
  const info = JSON.parse((await env.d.rt.containerStatus({ containerId: cid, verbose: true })).info.info!) as {
    runtimeSpec: { annotations: Record<string, string>; linux: { resources: { pids?: { limit: number } } } };
  };
  assert.equal(info.runtimeSpec.annotations["berth.test/nri-adjusted"], "yes");
  assert.equal(info.runtimeSpec.linux.resources.pids?.limit, 77);
  // The plugin hears StartContainer, so the task was created, then started once it had answered:
  // two runtime commands, where a container no plugin waits for is run by one.
  const shimDir = join(env.d.state, "shim");
  const shimLog = readdirSync(shimDir)
    .filter((f) => f.endsWith(".log"))
    .map((f) => readFileSync(join(shimDir, f), "utf8"))
    .join("");
  assert.match(shimLog, new RegExp(`\\[${cid}\\] created pid \\d+`));
  assert.match(shimLog, new RegExp(`\\[${cid}\\] started init pid \\d+`));

  await env.d.rt.stopContainer({ containerId: cid, timeout: 0n }, { deadlineMs: 60_000 });
  await env.d.rt.removeContainer({ containerId: cid }, { deadlineMs: 60_000 });
  await env.d.rt.stopPodSandbox({ podSandboxId: pod.id }, { deadlineMs: 120_000 });
  await env.d.rt.removePodSandbox({ podSandboxId: pod.id }, { deadlineMs: 120_000 });
  await until(() => of(pod.id).some((e) => e.event === "RemovePodSandbox"), "RemovePodSandbox at the plugin");
  assert.deepEqual(
    of(cid).map((e) => e.event),
    [
      "CreateContainer",
      "ValidateContainerAdjustment",
      "PostCreateContainer",
      "StartContainer",
      "PostStartContainer",
      "StopContainer",
      "RemoveContainer",
    ],
  );
  assert.deepEqual(
    of(pod.id).map((e) => e.event),
    ["RunPodSandbox", "StopPodSandbox", "RemovePodSandbox"],
  );
});

test("UpdateContainerResources goes through the plugin, and its change is what is applied", async () => {
  const pod = await env.runPod("nri-update", { annotations: { "berth.test/nri-update": "1" } });
  const cid = await env.runContainer(pod, "updated", ["sleep", "1000"]);
  await env.d.rt.updateContainerResources({
    containerId: cid,
    linux: { cpuShares: 512n, memoryLimitInBytes: 64n << 20n },
  });
  const info = JSON.parse((await env.d.rt.containerStatus({ containerId: cid, verbose: true })).info.info!) as {
    runtimeSpec: {
      linux: { cgroupsPath: string; resources: { cpu?: { shares?: number }; memory?: { limit?: number } } };
    };
  };
  assert.equal(info.runtimeSpec.linux.resources.cpu?.shares, 333, "the plugin's CPU shares, not the call's 512");
  assert.equal(info.runtimeSpec.linux.resources.memory?.limit, 64 << 20, "what the plugin left alone is the call's");
  // This host's cgroup v1 cpu hierarchy, cgroupfs driver: the running container has them too.
  const cgroup = `/sys/fs/cgroup/cpu${info.runtimeSpec.linux.cgroupsPath}/cpu.shares`;
  assert.equal(readFileSync(cgroup, "utf8").trim(), "333", cgroup);
  assert.deepEqual(
    of(cid)
      .map((e) => e.event)
      .filter((e) => e.includes("Update")),
    ["UpdateContainer", "PostUpdateContainer"],
  );
  await env.d.rt.stopPodSandbox({ podSandboxId: pod.id }, { deadlineMs: 120_000 });
  await env.d.rt.removePodSandbox({ podSandboxId: pod.id }, { deadlineMs: 120_000 });
});

test("a plugin's refusal fails CreateContainer with FAILED_PRECONDITION, leaving nothing", async () => {
  const pod = await env.runPod("nri-refuse");
  const bundles = readdirSync(join(env.d.state, "bundles")).length;
  await assert.rejects(
    env.d.rt.createContainer({
      podSandboxId: pod.id,
      config: env.containerConfig("refused", ["sleep", "1000"], { annotations: { "berth.test/nri-refuse": "1" } }),
      sandboxConfig: pod.config,
    }),
    (e: { code: number; details: string }) =>
      e.code === grpcStatus.FAILED_PRECONDITION &&
      e.details.includes("50-berth-test") &&
      e.details.includes("refused by nri-test-plugin"),
  );
  assert.deepEqual((await env.d.rt.listContainers({ filter: { podSandboxId: pod.id } })).containers, []);
  assert.equal(readdirSync(join(env.d.state, "bundles")).length, bundles, "no bundle left");
  // The plugin is told the container it refused is gone (it may have reserved something).
  const refused = events.filter((e) => e.event === "CreateContainer" && e.pod === pod.id).map((e) => e.container);
  assert.equal(refused.length, 1);
  await until(
    () => of(refused[0]!).some((e) => e.event === "RemoveContainer"),
    "RemoveContainer of the refused container at the plugin",
  );
  assert.ok(!of(refused[0]!).some((e) => e.event === "StartContainer"));
  // The same config without the refusal is created: nothing of the refused one is in the way.
  await env.runContainer(pod, "refused", ["sleep", "1000"]);
  await env.d.rt.stopPodSandbox({ podSandboxId: pod.id }, { deadlineMs: 120_000 });
  await env.d.rt.removePodSandbox({ podSandboxId: pod.id }, { deadlineMs: 120_000 });
});

test("a validator plugin sees the adjustments and its rejection fails CreateContainer, leaving nothing", async () => {
  const pod = await env.runPod("nri-validate", {
    annotations: { "berth.test/nri-adjust": "1", "berth.test/nri-validate-reject": "1" },
  });
  const bundles = readdirSync(join(env.d.state, "bundles")).length;
  await assert.rejects(
    env.d.rt.createContainer({
      podSandboxId: pod.id,
      config: env.containerConfig("rejected", ["sleep", "1000"]),
      sandboxConfig: pod.config,
    }),
    (e: { code: number; details: string }) =>
      e.code === grpcStatus.FAILED_PRECONDITION &&
      e.details.includes("validator plugin 50-berth-test rejected") &&
      e.details.includes("env adjustments are not allowed here"),
  );
  assert.deepEqual((await env.d.rt.listContainers({ filter: { podSandboxId: pod.id } })).containers, []);
  assert.equal(readdirSync(join(env.d.state, "bundles")).length, bundles, "no bundle left");
  await env.d.rt.stopPodSandbox({ podSandboxId: pod.id }, { deadlineMs: 120_000 });
  await env.d.rt.removePodSandbox({ podSandboxId: pod.id }, { deadlineMs: 120_000 });
});

test("a plugin that disconnects is dropped: pods and containers are made without it", async () => {
  const p = plugin!;
  const exited = new Promise((resolve) => p.once("exit", resolve));
  p.kill("SIGKILL");
  await exited;
  const pod = await env.runPod("nri-after", { annotations: { "berth.test/nri-refuse": "1" } });
  await env.runContainer(pod, "after", ["sleep", "1000"]);
  assert.ok(!events.some((e) => e.pod === pod.id), "the gone plugin heard nothing of the new pod");
  await env.d.rt.stopPodSandbox({ podSandboxId: pod.id }, { deadlineMs: 120_000 });
  await env.d.rt.removePodSandbox({ podSandboxId: pod.id }, { deadlineMs: 120_000 });
});

test("berthd shutting down tells a connected plugin and closes it; restarted, it takes plugins again", async () => {
  events.length = 0;
  await startPlugin();
  const p = plugin!;
  const pluginExit = new Promise<number | null>((resolve) => p.once("exit", (code) => resolve(code)));
  env.d.kill("SIGTERM");
  let exit;
  let pluginCode;
  try {
    exit = await env.d.exited;
    pluginCode = await pluginExit;
  } finally {
    // A berthd again, whatever happened: after() removes the pods through it.
    await env.restart();
  }
  assert.equal(exit.code, 0, `berthd exit: ${JSON.stringify(exit)}`);
  assert.equal(pluginCode, 0, "the plugin saw its connection closed after being synchronized");
  assert.deepEqual(
    events.filter((e) => e.event === "Shutdown" || e.event === "closed").map((e) => e.event),
    ["Shutdown", "closed"],
  );
  // The restarted berthd binds the socket again and takes a plugin.
  events.length = 0;
  await startPlugin();
});
