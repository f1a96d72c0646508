// crun pods through berthd's CRI: a pod whose RuntimeHandler is "crun" (a [runtime.handlers.crun]
// table with binary_name naming crun) runs its sandbox and containers through berth's shim with
// crun, on a private CNI bridge. Real crun, real CNI, real images.
//
// crun 1.8 refuses this machine's hybrid cgroup layout whatever its flags; the probe
// (helpers/crun.ts) then configures the handler with the wrapper the README documents, and
// skips, quoting crun, when nothing works. A second handler with plain crun shows what a
// refusal looks like through the CRI: crun's own message in a gRPC error, nothing left behind.
import assert from "node:assert/strict";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";

import { ContainerState, PodSandboxState } from "../../src/gen/cri/runtime/v1/api.js";
import { probeCrun } from "../helpers/crun.js";
import { startCriEnv, testImages, until, type CriEnv } from "../helpers/cri.js";
import { leaks, processesNaming } from "../helpers/leaks.js";

const BRIDGE = "berthcrun0";
const SUBNET = "10.234.42.0/24";

const probe = probeCrun();
if (probe.skip) console.log(`# skipping the crun pod tests: ${probe.skip}`);
else if (probe.refusal)
  console.log(`# plain crun refuses here ("${probe.refusal}"); the crun handler runs the README's wrapper`);

let env: CriEnv;
const ids = new Set<string>();

before(async () => {
  const handler = (name: string, binary: string) => `
[runtime.handlers.${name}]
runtime_type = "io.containerd.berth.v2"
binary_name = "${binary}"
root = "{{dir}}/${name}"
`;
  env = await startCriEnv({
    bridge: BRIDGE,
    subnet: SUBNET,
    config: (probe.binary ? handler("crun", probe.binary) : "") + handler("crun-plain", "crun"),
  });
  await env.d.img.pullImage({ image: { image: env.images.busybox } }, { deadlineMs: 120_000 });
});

after(async () => {
  await env?.stop();
  await testImages().then((i) => i.stop());
  probe.cleanup();
});

function leftOf(scope: Iterable<string>): string[] {
  const d = env.d;
  const warm = processesNaming([d.socket], [d.pid]).filter((p) => p.cmd.includes("-berth-serve"));
  return leaks({
    dir: d.dir,
    root: d.root,
    state: d.state,
    socket: d.socket,
    bridge: BRIDGE,
    ids: scope,
    excludePids: [d.pid, ...warm.map((p) => p.pid)],
  });
}

/** Containers an OCI runtime root still holds (one state dir per container). */
function runtimeContainers(root: string): string[] {
  if (!existsSync(root)) return [];
  return readdirSync(root, { withFileTypes: true })
    .filter((e) => e.isDirectory())
    .map((e) => e.name);
}

/** berth's pod cgroups, in every v1 hierarchy. */
function berthCgroups(): string[] {
  const out: string[] = [];
  for (const ctl of readdirSync("/sys/fs/cgroup")) {
    const base = join("/sys/fs/cgroup", ctl, "berth");
    try {
      for (const e of readdirSync(base, { withFileTypes: true })) if (e.isDirectory()) out.push(join(base, e.name));
    } catch {
      // no berth cgroup in this hierarchy
    }
  }
  return out.sort();
}

describe("crun pods through the CRI", { skip: probe.skip }, () => {
  const crunRoot = () => join(env.d.dir, "crun");
  const logOf = (pod: string, name: string) => readFileSync(join(env.logDir, pod, `${name}.log`), "utf8");
  const exited = (id: string) =>
    until(
      async () => {
        const s = (await env.d.rt.containerStatus({ containerId: id })).status!;
        return s.state === ContainerState.CONTAINER_EXITED ? s : undefined;
      },
      `container ${id} to exit`,
      60_000,
    );

  test("a crun pod gets a pod IP; its containers run under crun with their output, exit codes, exec and stats; removing it leaves nothing", async () => {
    const pod = await env.runPod("crun-web", {}, "crun");
    ids.add(pod.id);
    const st = (await env.d.rt.podSandboxStatus({ podSandboxId: pod.id })).status!;
    assert.equal(st.state, PodSandboxState.SANDBOX_READY);
    assert.equal(st.runtimeHandler, "crun");
    assert.match(st.network!.ip, /^10\.234\.42\.\d+$/);

    const httpd = await env.runContainer(pod, "httpd", ["httpd", "-f", "-p", "8080", "-h", "/www"]);
    ids.add(httpd);
    // crun, not runc, holds the pod's sandbox and its container
    assert.deepEqual(runtimeContainers(crunRoot()).sort(), [pod.id, httpd].sort());

    const get = await env.runContainer(pod, "get", [
      "sh",
      "-c",
      "wget -qO- http://127.0.0.1:8080/; echo to-stderr >&2; ip -4 addr show eth0 | grep -o 'inet [0-9.]*'; exit 3",
    ]);
    ids.add(get);
    const s = await exited(get);
    assert.equal(s.exitCode, 3);
    assert.equal(s.reason, "Error");
    const log = logOf("crun-web", "get");
    assert.match(log, /^\S+ stdout F hello from berth$/m);
    assert.match(log, /^\S+ stderr F to-stderr$/m);
    assert.match(log, new RegExp(`^\\S+ stdout F inet ${st.network!.ip.replaceAll(".", "\\.")}$`, "m"));

    const r = await env.d.rt.execSync({
      containerId: httpd,
      cmd: ["sh", "-c", "echo out; echo err >&2; exit 4"],
      timeout: 30n,
    });
    assert.equal(r.stdout.toString(), "out\n");
    assert.equal(r.stderr.toString(), "err\n");
    assert.equal(r.exitCode, 4);
    await assert.rejects(
      env.d.rt.execSync({ containerId: httpd, cmd: ["sleep", "1000"], timeout: 2n }, { deadlineMs: 60_000 }),
      (e) => (e as { code?: number }).code === 4, // DEADLINE_EXCEEDED
    );

    const stats = (await env.d.rt.containerStats({ containerId: httpd })).stats!;
    assert.ok((stats.cpu?.usageCoreNanoSeconds?.value ?? 0n) > 0n, "cpu usage");
    assert.ok((stats.memory?.workingSetBytes?.value ?? 0n) > 0n, "memory working set");

    // httpd is its pid namespace's init, with no SIGTERM handler: SIGKILL follows the timeout
    await env.d.rt.stopContainer({ containerId: httpd, timeout: 2n }, { deadlineMs: 60_000 });
    assert.equal((await env.d.rt.containerStatus({ containerId: httpd })).status!.exitCode, 137);
    await env.d.rt.stopPodSandbox({ podSandboxId: pod.id }, { deadlineMs: 120_000 });
    await env.d.rt.removePodSandbox({ podSandboxId: pod.id }, { deadlineMs: 120_000 });
    assert.deepEqual(runtimeContainers(crunRoot()), [], "crun still knows containers");
    await until(() => leftOf(ids).length === 0, "nothing of the pod to be left", 10_000).catch(() => undefined);
    assert.deepEqual(leftOf(ids), []);
  });
});

test(
  "a pod whose crun refuses this machine's cgroup layout fails with crun's message in a gRPC error and leaves nothing behind",
  { skip: !probe.refusal && "plain crun runs containers here: there is no refusal to see" },
  async (t) => {
    const cgroupsBefore = berthCgroups();
    const leftBefore = leftOf([]); // only what an earlier failed test may have left
    const podsBefore = (await env.d.rt.listPodSandbox({})).items.map((p) => p.id);
    await assert.rejects(
      env.runPod("crun-refused", {}, "crun-plain"),
      (e: Error & { code?: number; details?: string }) => {
        assert.equal(e.code, 9, `FAILED_PRECONDITION, got ${e.code}: ${e.message}`);
        assert.ok(e.details?.includes(probe.refusal), e.details);
        // the pause is created and started by one command (berthd's start-at-once Create)
        assert.match(e.details ?? "", /crun run/);
        t.diagnostic(`RunPodSandbox: ${e.details}`);
        return true;
      },
    );
    assert.deepEqual(
      (await env.d.rt.listPodSandbox({})).items.map((p) => p.id),
      podsBefore,
      "no pod is listed for the failed run",
    );
    assert.deepEqual(runtimeContainers(join(env.d.dir, "crun-plain")), [], "crun keeps no state");
    await until(
      () => leftOf([]).join() === leftBefore.join() && berthCgroups().join() === cgroupsBefore.join(),
      "cleanup",
      10_000,
    ).catch(() => undefined);
    assert.deepEqual(leftOf([]), leftBefore);
    assert.deepEqual(berthCgroups(), cgroupsBefore, "no pod cgroup is left");
    // the daemon carries on: a runc pod runs beside
    const ok = await env.runPod("after-refusal");
    ids.add(ok.id);
    const cid = await env.runContainer(ok, "c", ["sh", "-c", "exit 6"]);
    ids.add(cid);
    const s = await until(
      async () => {
        const st = (await env.d.rt.containerStatus({ containerId: cid })).status!;
        return st.state === ContainerState.CONTAINER_EXITED ? st : undefined;
      },
      "the runc container to exit",
      60_000,
    );
    assert.equal(s.exitCode, 6);
    await env.d.rt.stopPodSandbox({ podSandboxId: ok.id });
    await env.d.rt.removePodSandbox({ podSandboxId: ok.id });
  },
);
