// CreateContainer names the pod's namespaces (/proc/PID/ns/...) by the sandbox pid its record
// holds (set by RunPodSandbox and recovery), without a call to the shim; it refuses a pod whose
// sandbox exit is known from the record, and asks the shim only when the pid is unknown.
import assert from "node:assert/strict";
import { afterEach, beforeEach, test } from "node:test";
import { ContainerConfig } from "../../../src/gen/cri/runtime/v1/api.js";
import { createContainer } from "../../../src/cri/container/create.js";
import { FailedPreconditionError } from "../../../src/util/errors.js";
import { type World, addPod, world } from "./fakes.js";

let w: World;
beforeEach(() => {
  w = world();
  // An image whose snapshot has no layers (nothing to mount): what create needs of the image service.
  Object.assign(w.containers.images, {
    resolveId: () => "sha256:img",
    status: async () => ({ id: "sha256:img", repoDigests: [], config: {} }),
    stageRootfs: async () => ({ commit: () => [], discard: async () => {} }),
    forgetRootfs: () => undefined,
  });
});
afterEach(async () => {
  await w.containers.trash.settled();
  w.close();
});

const config = (name: string) =>
  ContainerConfig.fromPartial({ metadata: { name }, image: { image: "img" }, args: ["true"], linux: {} });
/** A ready pod (its fake sandbox task runs with pid 100) with a network namespace path. */
function pod(): string {
  const id = addPod(w);
  w.sandboxes.store.setNetwork(id, "/run/netns/fake", []);
  return id;
}
const ipcPath = (id: string) => w.containers.bundles.readSpec(id).linux.namespaces.find((n) => n.type === "ipc")?.path;

test("the sandbox pid comes from the pod's record: no call to its shim", async () => {
  const p = pod();
  w.sandboxes.store.setPid(p, 4242);
  const id = await createContainer(w.containers, w.sandboxes.store.get(p)!, config("a"));
  assert.equal(ipcPath(id), "/proc/4242/ns/ipc");
  assert.deepEqual(
    w.runtime.calls.filter((c) => c.startsWith("state")),
    [],
  );
});

test("a pod whose sandbox exit was heard is refused from the record", async () => {
  const p = pod();
  w.sandboxes.store.setPid(p, 4242);
  w.sandboxes.store.apply(p, { type: "exit-heard" });
  await assert.rejects(
    createContainer(w.containers, w.sandboxes.store.get(p)!, config("b")),
    (err) => err instanceof FailedPreconditionError && /not running/.test(err.message),
  );
  assert.deepEqual(w.containers.store.list(), []);
  assert.deepEqual(w.runtime.calls, []);
});

test("a pid the record does not know (its shim silent at recovery) is asked of the shim", async () => {
  const p = pod(); // the record has no pid
  const id = await createContainer(w.containers, w.sandboxes.store.get(p)!, config("c"));
  assert.equal(ipcPath(id), "/proc/100/ns/ipc");
  assert.deepEqual(
    w.runtime.calls.filter((c) => c.startsWith("state")),
    [`state ${p}`],
  );
});
