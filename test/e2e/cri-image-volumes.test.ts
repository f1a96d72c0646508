// Image volumes (a CRI Mount naming an image): the image's files appear read-only at the
// container path (or only its image_sub_path), ContainerStatus names the image by its id, a
// bad mount is refused with nothing left behind, and removal unmounts everything.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { status as grpcStatus } from "@grpc/grpc-js";
import { startCriEnv, testImages, type CriEnv } from "../helpers/cri.js";

let env: CriEnv;
let imageId = "";

before(async () => {
  env = await startCriEnv({ bridge: "berthiv0", subnet: "10.234.62.0/24" });
  imageId = (await env.d.img.pullImage({ image: { image: env.images.busybox } }, { deadlineMs: 120_000 })).imageRef;
});

after(async () => {
  await env?.stop();
  await (await testImages()).stop();
});

const code = (err: unknown) => (err as { code: number }).code;

test("an image volume shows the image read-only, whole or a sub path, and goes away with the container", async () => {
  const pod = await env.runPod("iv");
  const volume = (containerPath: string, imageSubPath = "") => ({
    containerPath,
    readonly: true,
    image: { image: env.images.busybox },
    imageSubPath,
  });
  const cid = await env.runContainer(pod, "reader", ["sleep", "600"], {
    mounts: [volume("/mnt/image"), volume("/mnt/bin", "bin")],
  });
  const exec = (cmd: string[]) => env.d.rt.execSync({ containerId: cid, cmd, timeout: 10n });
  assert.equal((await exec(["/mnt/image/bin/busybox", "true"])).exitCode, 0, "the image's binaries run from it");
  assert.equal((await exec(["test", "-f", "/mnt/bin/busybox"])).exitCode, 0, "the sub path is the image's /bin");
  const write = await exec(["touch", "/mnt/image/new-file"]);
  assert.notEqual(write.exitCode, 0);
  assert.match(write.stderr.toString(), /Read-only file system/);

  const st = (await env.d.rt.containerStatus({ containerId: cid })).status!;
  assert.deepEqual(
    st.mounts.map((m) => [m.containerPath, m.image?.image, m.image?.imageRef, m.imageSubPath]),
    [
      ["/mnt/image", env.images.busybox, imageId, ""],
      ["/mnt/bin", env.images.busybox, imageId, "bin"],
    ],
  );

  await env.d.rt.stopContainer({ containerId: cid, timeout: 0n });
  await env.d.rt.removeContainer({ containerId: cid });
  assert.deepEqual(
    env.leftovers().filter((l) => l.startsWith("mount") && (l.includes(cid) || l.includes("image-volumes"))),
    [],
  );
  await env.d.rt.stopPodSandbox({ podSandboxId: pod.id });
  await env.d.rt.removePodSandbox({ podSandboxId: pod.id });
});

test("a bad image volume is refused with the reason, and leaves no container or mount", async () => {
  const pod = await env.runPod("iv-bad");
  const create = (mount: Record<string, unknown>) =>
    env.d.rt.createContainer({
      podSandboxId: pod.id,
      config: env.containerConfig("bad", ["sleep", "600"], { mounts: [{ containerPath: "/mnt/x", ...mount }] }),
      sandboxConfig: pod.config,
    });
  const image = { image: env.images.busybox };
  const cases: [Record<string, unknown>, number, RegExp][] = [
    [{ image, readonly: false }, grpcStatus.INVALID_ARGUMENT, /must be read-only/],
    [
      { image, readonly: true, imageSubPath: "no/such/dir" },
      grpcStatus.INVALID_ARGUMENT,
      /does not exist in the image/,
    ],
    [{ image, readonly: true, imageSubPath: "../../etc" }, grpcStatus.INVALID_ARGUMENT, /must stay inside the image/],
    [{ image: { image: "127.0.0.1:1/never/pulled:1" }, readonly: true }, grpcStatus.NOT_FOUND, /pull it first/],
  ];
  for (const [mount, want, message] of cases) {
    await assert.rejects(create(mount), (e: Error) => code(e) === want && message.test(e.message));
  }
  assert.deepEqual((await env.d.rt.listContainers({ filter: { podSandboxId: pod.id } })).containers, []);
  assert.deepEqual(
    env.leftovers().filter((l) => l.startsWith("mount") && l.includes("image-volumes")),
    [],
  );
  await env.d.rt.stopPodSandbox({ podSandboxId: pod.id });
  await env.d.rt.removePodSandbox({ podSandboxId: pod.id });
});
