// Responses encoded through the one reused writer (src/cri/response-encoder.ts) are byte for
// byte what the generated serializer writes, whatever came before: a large response then a
// small one (the kept buffer's old bytes must not leak), and after an encode that threw.
import assert from "node:assert/strict";
import { test } from "node:test";
import * as cri from "../../../src/gen/cri/runtime/v1/api.js";
import { ImageServiceService, RuntimeServiceService } from "../../../src/gen/cri/runtime/v1/api.js";
import { withReusedWriter } from "../../../src/cri/response-encoder.js";

const codecs = cri as unknown as Record<string, unknown>;
const runtime = withReusedWriter(RuntimeServiceService, codecs);
const image = withReusedWriter(ImageServiceService, codecs);

function container(i: number): cri.Container {
  return cri.Container.fromPartial({
    id: `c${i}`.padEnd(64, "0"),
    podSandboxId: "p".repeat(64),
    metadata: { name: `name-${i}`, attempt: i },
    image: { image: "sha256:" + "a".repeat(64), annotations: { a: "b" } },
    imageRef: "sha256:" + "b".repeat(64),
    state: cri.ContainerState.CONTAINER_RUNNING,
    createdAt: 1_700_000_000_000_000_000n + BigInt(i),
    labels: { app: "x", i: String(i) },
    annotations: { "io.kubernetes.container.hash": "abc" },
  });
}

test("every CRI method with a <Method>Response codec but the event stream goes through the reused writer", () => {
  const generated = Object.keys(RuntimeServiceService).filter(
    (name) => runtime[name] === RuntimeServiceService[name as keyof typeof RuntimeServiceService],
  );
  assert.deepEqual(generated, ["getContainerEvents"]);
  for (const name of Object.keys(ImageServiceService)) {
    assert.notEqual(image[name], ImageServiceService[name as keyof typeof ImageServiceService], name);
  }
});

test("a large response, then small ones: the same bytes as the generated serializer", () => {
  const big: cri.ListContainersResponse = { containers: Array.from({ length: 1000 }, (_, i) => container(i)) };
  const small: cri.ListContainersResponse = { containers: [container(7)] };
  const version: cri.VersionResponse = {
    version: "0.1.0",
    runtimeName: "berth",
    runtimeVersion: "1",
    runtimeApiVersion: "v1",
  };
  const list = runtime.listContainers!;
  const gen = RuntimeServiceService.listContainers;
  assert.deepEqual(list.responseSerialize(big), gen.responseSerialize(big));
  assert.deepEqual(list.responseSerialize(small), gen.responseSerialize(small));
  assert.deepEqual(
    runtime.version!.responseSerialize(version),
    RuntimeServiceService.version.responseSerialize(version),
  );
  assert.deepEqual(list.responseSerialize({ containers: [] }), Buffer.alloc(0));
  // Decodes back to what was sent.
  assert.deepEqual(cri.ListContainersResponse.decode(list.responseSerialize(small)), small);
});

test("an encode that throws leaves the next response whole", () => {
  // Thrown by the int64 encode of the second container, after the first is in the writer.
  const bad = { containers: [container(1), { ...container(2), createdAt: "soon" as unknown as bigint }] };
  assert.throws(() => runtime.listContainers!.responseSerialize(bad));
  const good: cri.ListContainersResponse = { containers: [container(3)] };
  assert.deepEqual(
    runtime.listContainers!.responseSerialize(good),
    RuntimeServiceService.listContainers.responseSerialize(good),
  );
});

test("ListContainers and ListPodSandbox: items encoded once, by the item object, framed as the generated serializer frames them", () => {
  const items = Array.from({ length: 300 }, (_, i) => container(i));
  const gen = RuntimeServiceService.listContainers;
  const first = runtime.listContainers!.responseSerialize({ containers: items });
  assert.deepEqual(first, gen.responseSerialize({ containers: items }));
  // The same objects again, fewer of them, and with a new object for one: still the same bytes.
  const again = [items[5]!, container(1000), items[299]!, items[5]!];
  assert.deepEqual(
    runtime.listContainers!.responseSerialize({ containers: again }),
    gen.responseSerialize({ containers: again }),
  );
  assert.deepEqual(runtime.listContainers!.responseSerialize({ containers: [] }), Buffer.alloc(0));
  const pods: cri.PodSandbox[] = Array.from({ length: 3 }, (_, i) =>
    cri.PodSandbox.fromPartial({
      id: `p${i}`.padEnd(64, "0"),
      metadata: { name: `pod-${i}`, uid: "u", namespace: "default", attempt: 0 },
      state: cri.PodSandboxState.SANDBOX_READY,
      createdAt: 5n,
      labels: { a: "b".repeat(200) }, // an item over 127 bytes: a two-byte length
    }),
  );
  for (let round = 0; round < 2; round++) {
    assert.deepEqual(
      runtime.listPodSandbox!.responseSerialize({ items: pods }),
      RuntimeServiceService.listPodSandbox.responseSerialize({ items: pods }),
    );
  }
});

test("a list whose items are the same kept objects in the same order is answered with the same bytes; any change makes new ones", () => {
  const items = Array.from({ length: 1000 }, (_, i) => container(i));
  const ser = runtime.listContainers!.responseSerialize;
  const gen = RuntimeServiceService.listContainers.responseSerialize;
  const first = ser({ containers: items });
  assert.equal(ser({ containers: [...items] }), first, "a new array of the same items: the same buffer");
  const changed = [...items];
  changed[500] = container(5000);
  const second = ser({ containers: changed });
  assert.notEqual(second, first);
  assert.deepEqual(second, gen({ containers: changed }));
  const reordered = [items[1]!, items[0]!, ...items.slice(2)];
  assert.deepEqual(ser({ containers: reordered }), gen({ containers: reordered }));
  const shorter = items.slice(0, 999);
  assert.deepEqual(ser({ containers: shorter }), gen({ containers: shorter }));
  // the first answer's bytes were never written over
  assert.deepEqual(first, gen({ containers: items }));
  assert.deepEqual(ser({ containers: items }), first);
});

function containerStatus(i: number): cri.ContainerStatus {
  return cri.ContainerStatus.fromPartial({
    id: `c${i}`.padEnd(64, "0"),
    metadata: { name: `name-${i}`, attempt: 0 },
    state: cri.ContainerState.CONTAINER_RUNNING,
    createdAt: 1_700_000_000_000_000_000n,
    startedAt: 1_700_000_000_100_000_000n + BigInt(i),
    image: { image: "busybox", annotations: {} },
    imageRef: "sha256:" + "b".repeat(64),
    labels: { app: "x".repeat(150) }, // over 127 bytes: a two-byte length
    logPath: "/var/log/pods/c.log",
    user: { linux: { uid: 0n, gid: 0n, supplementalGroups: [0n, 10n] } },
  });
}

test("ContainerStatus, ImageStatus, ListImages, PodSandboxStatus: kept messages framed, the generated serializer's bytes", () => {
  const rt = RuntimeServiceService;
  const s1 = containerStatus(1);
  for (let round = 0; round < 2; round++) {
    for (const r of [
      { status: s1, info: {} as Record<string, string> },
      { status: s1, info: { info: '{"pid":1}' } }, // verbose: the generated encoding
      { status: undefined, info: {} },
    ])
      assert.deepEqual(runtime.containerStatus!.responseSerialize(r), rt.containerStatus.responseSerialize(r));
  }
  const img = (i: number) =>
    cri.Image.fromPartial({ id: `sha256:${i}`.padEnd(71, "0"), repoTags: [`busybox:${i}`], size: 1234n });
  const images = [img(1), img(2)];
  for (const r of [
    { image: images[0], info: {} as Record<string, string> },
    { image: images[1], info: { info: "{}" } },
    { image: undefined, info: {} },
  ])
    assert.deepEqual(image.imageStatus!.responseSerialize(r), ImageServiceService.imageStatus.responseSerialize(r));
  assert.deepEqual(
    image.listImages!.responseSerialize({ images }),
    ImageServiceService.listImages.responseSerialize({ images }),
  );
  const pod = cri.PodSandboxStatus.fromPartial({
    id: "p".repeat(64),
    metadata: { name: "pod", uid: "u", namespace: "default" },
    state: cri.PodSandboxState.SANDBOX_READY,
    network: { ip: "10.0.0.2" },
    labels: { a: "b" },
  });
  for (const r of [
    {
      status: pod,
      info: {} as Record<string, string>,
      containersStatuses: [s1, containerStatus(2)],
      timestamp: 1_733_000_000_000_000_000n,
    },
    { status: pod, info: {}, containersStatuses: [], timestamp: 0n },
    { status: pod, info: { info: "{}" }, containersStatuses: [s1], timestamp: 5n },
  ])
    assert.deepEqual(runtime.podSandboxStatus!.responseSerialize(r), rt.podSandboxStatus.responseSerialize(r));
});

test("a kept message's bytes belong to its object: a new object with other values is encoded anew", () => {
  const a = containerStatus(1);
  const first = runtime.containerStatus!.responseSerialize({ status: a, info: {} });
  const b = { ...a, state: cri.ContainerState.CONTAINER_EXITED, exitCode: 3 };
  const second = runtime.containerStatus!.responseSerialize({ status: b, info: {} });
  assert.equal(cri.ContainerStatusResponse.decode(first).status?.state, cri.ContainerState.CONTAINER_RUNNING);
  assert.equal(cri.ContainerStatusResponse.decode(second).status?.exitCode, 3);
  assert.deepEqual(second, RuntimeServiceService.containerStatus.responseSerialize({ status: b, info: {} }));
});

test("the status reads, ListImages and Version answer from the kept bytes: a message handed out before is not encoded again", () => {
  // Handlers never change a message once handed out; changing one here shows where the bytes come from.
  const s = containerStatus(3);
  const before = runtime.containerStatus!.responseSerialize({ status: s, info: {} });
  s.exitCode = 99;
  assert.deepEqual(runtime.containerStatus!.responseSerialize({ status: s, info: {} }), before);
  const pod = cri.PodSandboxStatus.fromPartial({ id: "p1", state: cri.PodSandboxState.SANDBOX_READY });
  const podBefore = runtime.podSandboxStatus!.responseSerialize({
    status: pod,
    info: {},
    containersStatuses: [s],
    timestamp: 7n,
  });
  pod.state = cri.PodSandboxState.SANDBOX_NOTREADY;
  const podAfter = runtime.podSandboxStatus!.responseSerialize({
    status: pod,
    info: {},
    containersStatuses: [s],
    timestamp: 8n,
  });
  const decoded = cri.PodSandboxStatusResponse.decode(podAfter);
  assert.equal(decoded.status?.state, cri.PodSandboxState.SANDBOX_READY);
  assert.equal(decoded.containersStatuses[0]?.exitCode, 0);
  assert.equal(decoded.timestamp, 8n, "the timestamp is made for every call");
  assert.notDeepEqual(podAfter, podBefore);
  const version = cri.VersionResponse.fromPartial({ version: "0.1.0", runtimeName: "berth" });
  const versionBytes = runtime.version!.responseSerialize(version);
  version.runtimeName = "other";
  assert.deepEqual(runtime.version!.responseSerialize(version), versionBytes);
  const img = cri.Image.fromPartial({ id: "sha256:1", size: 5n });
  const status = image.imageStatus!.responseSerialize({ image: img, info: {} });
  const list = image.listImages!.responseSerialize({ images: [img] });
  img.size = 6n;
  assert.deepEqual(image.imageStatus!.responseSerialize({ image: img, info: {} }), status);
  assert.deepEqual(image.listImages!.responseSerialize({ images: [img] }), list);
});
