// CDI devices through the CRI with real runc: a spec file written to a spec directory of
// berthd's config (`vendor.example/dev=one`: the host's /dev/null as /dev/vendor-one, plus
// env) reaches the container asked for it through CDI_devices (and through the older
// cdi.k8s.io/* annotation); an unknown device is INVALID_ARGUMENT naming it, a broken spec
// file is an error naming the file, and neither leaves a container, bundle or snapshot.
import assert from "node:assert/strict";
import { mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { status as grpcStatus } from "@grpc/grpc-js";
import { startCriEnv, testImages, type CriEnv } from "../helpers/cri.js";

let env: CriEnv;
let staticDir: string;
let dynamicDir: string;

before(async () => {
  env = await startCriEnv({
    bridge: "berthcdi0",
    subnet: "10.234.81.0/24",
    config: `
[cdi]
spec_dirs = ["{{dir}}/cdi-static", "{{dir}}/cdi-dynamic"]
`,
  });
  staticDir = join(env.d.dir, "cdi-static");
  dynamicDir = join(env.d.dir, "cdi-dynamic");
  mkdirSync(staticDir);
  mkdirSync(dynamicDir);
  writeFileSync(
    join(staticDir, "vendor.yaml"),
    `cdiVersion: "0.6.0"
kind: vendor.example/dev
containerEdits:
  env: [VENDOR_SPEC=any]
devices:
  - name: one
    containerEdits:
      env: [VENDOR_ONE=1]
      deviceNodes:
        - path: /dev/vendor-one
          hostPath: /dev/null
  - name: two
    containerEdits:
      env: [VENDOR_TWO=2]
`,
  );
  await env.d.img.pullImage({ image: { image: env.images.busybox } }, { deadlineMs: 120_000 });
});

after(async () => {
  await env?.stop();
  await (await testImages()).stop();
});

async function exec(cid: string, cmd: string[]): Promise<string> {
  const r = await env.d.rt.execSync({ containerId: cid, cmd, timeout: 10n });
  assert.equal(r.exitCode, 0, r.stderr.toString());
  return r.stdout.toString();
}

function snapshotCount(): number {
  try {
    return readdirSync(join(env.d.root, "snapshots", "overlayfs", "snapshots")).length;
  } catch {
    return 0;
  }
}

test("a CDI device's node, env and cgroup rule reach the container", async () => {
  const pod = await env.runPod("cdi");
  const cid = await env.runContainer(pod, "with-device", ["sleep", "1000"], {
    CDIDevices: [{ name: "vendor.example/dev=one" }],
  });
  // busybox ls -l shows a character device as "crw-... 1, 3".
  assert.match(await exec(cid, ["ls", "-l", "/dev/vendor-one"]), /^c.* 1,\s+3 .*\/dev\/vendor-one$/m);
  assert.equal(await exec(cid, ["sh", "-c", "echo discarded > /dev/vendor-one && echo written"]), "written\n");
  const envOut = await exec(cid, ["env"]);
  assert.match(envOut, /^VENDOR_ONE=1$/m);
  assert.match(envOut, /^VENDOR_SPEC=any$/m, "the spec-level edits came along");
  assert.doesNotMatch(envOut, /VENDOR_TWO/, "only the device asked for");
  const info = JSON.parse((await env.d.rt.containerStatus({ containerId: cid, verbose: true })).info.info!) as {
    runtimeSpec: {
      linux: { resources: { devices: { allow: boolean; type?: string; major?: number; minor?: number }[] } };
    };
  };
  assert.ok(
    info.runtimeSpec.linux.resources.devices.some((d) => d.allow && d.type === "c" && d.major === 1 && d.minor === 3),
    "the device cgroup allows the node",
  );

  // The annotation kubelet's device plugins used before CDI_devices.
  const viaAnnotation = await env.runContainer(pod, "via-annotation", ["sleep", "1000"], {
    annotations: { "cdi.k8s.io/vendor": "vendor.example/dev=two" },
  });
  assert.match(await exec(viaAnnotation, ["env"]), /^VENDOR_TWO=2$/m);

  await env.d.rt.stopPodSandbox({ podSandboxId: pod.id }, { deadlineMs: 120_000 });
  await env.d.rt.removePodSandbox({ podSandboxId: pod.id }, { deadlineMs: 120_000 });
});

test("an unknown device or a broken spec file fails CreateContainer and leaves nothing", async () => {
  const pod = await env.runPod("cdi-bad");
  const bundles = readdirSync(join(env.d.state, "bundles")).length;
  const snapshots = snapshotCount();
  assert.ok(snapshots > 0, "the image's layer snapshots are where snapshotCount looks");
  const create = (device: string) =>
    env.d.rt.createContainer({
      podSandboxId: pod.id,
      config: env.containerConfig("bad", ["sleep", "1000"], { CDIDevices: [{ name: device }] }),
      sandboxConfig: pod.config,
    });
  await assert.rejects(
    create("vendor.example/dev=three"),
    (e: { code: number; details: string }) =>
      e.code === grpcStatus.INVALID_ARGUMENT && e.details.includes("vendor.example/dev=three"),
  );
  // The same device from two files of equal priority is ambiguous.
  writeFileSync(
    join(staticDir, "copy.json"),
    JSON.stringify({ cdiVersion: "0.3.0", kind: "vendor.example/dev", devices: [{ name: "one" }] }),
  );
  await assert.rejects(
    create("vendor.example/dev=one"),
    (e: { code: number; details: string }) =>
      e.code === grpcStatus.INVALID_ARGUMENT && /ambiguous/.test(e.details) && e.details.includes("copy.json"),
  );
  rmSync(join(staticDir, "copy.json"));
  const broken = join(dynamicDir, "broken.json");
  writeFileSync(broken, '{"cdiVersion": "0.3.0", "kind": "x.y/z"');
  await assert.rejects(create("vendor.example/dev=one"), (e: { details: string }) => e.details.includes(broken));
  rmSync(broken);

  assert.deepEqual((await env.d.rt.listContainers({ filter: { podSandboxId: pod.id } })).containers, []);
  assert.equal(readdirSync(join(env.d.state, "bundles")).length, bundles, "no bundle left");
  assert.equal(snapshotCount(), snapshots, "no snapshot left");
  await env.d.rt.stopPodSandbox({ podSandboxId: pod.id }, { deadlineMs: 120_000 });
  await env.d.rt.removePodSandbox({ podSandboxId: pod.id }, { deadlineMs: 120_000 });
});
