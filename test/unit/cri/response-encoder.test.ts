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
