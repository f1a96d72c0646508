// AppArmor through the CRI with real runc. Everywhere: an unset or RuntimeDefault profile
// runs, and a Localhost profile that cannot be honoured is FAILED_PRECONDITION with nothing
// left behind. On a host whose kernel enforces AppArmor (not this test machine): berthd
// loads berth-default on first use and confines unprivileged containers with it, privileged
// ones run unconfined, and a loaded Localhost profile is applied.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import { status as grpcStatus } from "@grpc/grpc-js";
import { SecurityProfile_ProfileType as T } from "../../src/gen/cri/runtime/v1/api.js";
import { startCriEnv, testImages, type CriEnv } from "../helpers/cri.js";

const PARSER = ["/usr/sbin/apparmor_parser", "/sbin/apparmor_parser"].find((p) => existsSync(p));
const kernelAppArmor = (() => {
  try {
    return readFileSync("/sys/module/apparmor/parameters/enabled", "utf8").trim() === "Y";
  } catch {
    return false;
  }
})();
const NO_APPARMOR = !kernelAppArmor
  ? "this kernel has no AppArmor (/sys/module/apparmor/parameters/enabled is not Y)"
  : !PARSER
    ? "apparmor_parser is not installed"
    : false;
const loaded = () =>
  existsSync("/sys/kernel/security/apparmor/profiles")
    ? readFileSync("/sys/kernel/security/apparmor/profiles", "utf8")
        .split("\n")
        .map((l) => l.replace(/ \([^)]*\)$/, ""))
    : [];

// A profile of the test's own, for Localhost: everything but writes under /tmp.
const TEST_PROFILE = "berth-test-no-tmp-writes";
const testProfileText = `profile ${TEST_PROFILE} flags=(attach_disconnected,mediate_deleted) {
  network,
  capability,
  file,
  umount,
  signal,
  deny /tmp/** w,
}
`;

let env: CriEnv;
let defaultWasLoaded = false;

before(async () => {
  if (!NO_APPARMOR) {
    defaultWasLoaded = loaded().includes("berth-default");
    execFileSync(PARSER!, ["-Kr"], { input: testProfileText });
  }
  env = await startCriEnv({ bridge: "berthaa0", subnet: "10.234.63.0/24" });
  await env.d.img.pullImage({ image: { image: env.images.busybox } }, { deadlineMs: 120_000 });
});

after(async () => {
  try {
    await env?.stop();
    await (await testImages()).stop();
  } finally {
    if (!NO_APPARMOR) {
      // Profiles stay in the kernel: remove the ones this test put there.
      execFileSync(PARSER!, ["-R"], { input: testProfileText });
      if (!defaultWasLoaded && loaded().includes("berth-default")) {
        execFileSync(PARSER!, ["-R"], { input: `profile berth-default {\n}\n` });
      }
    }
  }
});

const sc = (apparmor?: { profileType: T; localhostRef?: string }, privileged = false) => ({
  linux: { securityContext: { apparmor: apparmor && { localhostRef: "", ...apparmor }, privileged } },
});

async function label(containerId: string): Promise<string> {
  const r = await env.d.rt.execSync({ containerId, cmd: ["cat", "/proc/self/attr/current"], timeout: 10n });
  return r.stdout.toString().trim();
}

describe("AppArmor", () => {
  test("unset and RuntimeDefault profiles run; a Localhost profile that cannot be applied is FAILED_PRECONDITION and leaves nothing", async () => {
    const pod = await env.runPod("aa");
    const unset = await env.runContainer(pod, "unset", ["sleep", "600"]);
    const def = await env.runContainer(pod, "default", ["sleep", "600"], sc({ profileType: T.RuntimeDefault }));
    for (const id of [unset, def]) {
      const r = await env.d.rt.execSync({ containerId: id, cmd: ["true"], timeout: 10n });
      assert.equal(r.exitCode, 0);
    }
    const missing = NO_APPARMOR ? "berth-any" : "berth-test-not-loaded";
    await assert.rejects(
      env.d.rt.createContainer({
        podSandboxId: pod.id,
        config: env.containerConfig("local", ["sleep", "600"], sc({ profileType: T.Localhost, localhostRef: missing })),
        sandboxConfig: pod.config,
      }),
      (e: Error & { code?: number }) =>
        e.code === grpcStatus.FAILED_PRECONDITION &&
        (NO_APPARMOR ? /AppArmor is not enabled on this node/ : /is not loaded on this node/).test(e.message),
    );
    const names = (await env.d.rt.listContainers({ filter: { podSandboxId: pod.id } })).containers.map(
      (c) => c.metadata?.name,
    );
    assert.deepEqual(names.sort(), ["default", "unset"]);
    await env.d.rt.stopPodSandbox({ podSandboxId: pod.id });
    await env.d.rt.removePodSandbox({ podSandboxId: pod.id });
  });

  test(
    "berth-default confines unprivileged containers; privileged run unconfined; Localhost applies",
    { skip: NO_APPARMOR },
    async () => {
      const pod = await env.runPod("aa-enforced");
      const unset = await env.runContainer(pod, "unset", ["sleep", "600"]);
      assert.equal(await label(unset), "berth-default (enforce)");
      assert.ok(loaded().includes("berth-default"), "berthd loaded its default profile");
      // The default profile denies writes to the kernel's knobs.
      const w = await env.d.rt.execSync({
        containerId: unset,
        cmd: ["sh", "-c", "echo h > /proc/sysrq-trigger"],
        timeout: 10n,
      });
      assert.notEqual(w.exitCode, 0);
      assert.match(w.stderr.toString(), /Permission denied/);
      const unconfined = await env.runContainer(pod, "unconfined", ["sleep", "600"], sc({ profileType: T.Unconfined }));
      assert.equal(await label(unconfined), "unconfined");
      const local = await env.runContainer(
        pod,
        "local",
        ["sleep", "600"],
        sc({ profileType: T.Localhost, localhostRef: `localhost/${TEST_PROFILE}` }),
      );
      assert.equal(await label(local), `${TEST_PROFILE} (enforce)`);
      const t = await env.d.rt.execSync({ containerId: local, cmd: ["touch", "/tmp/x"], timeout: 10n });
      assert.notEqual(t.exitCode, 0);
      await env.d.rt.stopPodSandbox({ podSandboxId: pod.id });
      await env.d.rt.removePodSandbox({ podSandboxId: pod.id });

      const priv = await env.runPod("aa-privileged", { linux: { securityContext: { privileged: true } } });
      const p = await env.runContainer(priv, "privileged", ["sleep", "600"], sc(undefined, true));
      assert.equal(await label(p), "unconfined");
      await env.d.rt.stopPodSandbox({ podSandboxId: priv.id });
      await env.d.rt.removePodSandbox({ podSandboxId: priv.id });
    },
  );
});

if (NO_APPARMOR) console.log(`# cri-apparmor: enforcement tests skipped: ${NO_APPARMOR}`);
