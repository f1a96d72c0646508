// polledContainerStatus (src/cri/container/status.ts): kubelet's ContainerStatus poll answered
// without a promise gives what containerStatus gives, and leaves the cases it cannot answer
// (a container being created, an image_ref not kept yet) to it.
import assert from "node:assert/strict";
import { afterEach, beforeEach, test } from "node:test";
import { containerStatus, polledContainerStatus } from "../../../src/cri/container/status.js";
import { ContainerState } from "../../../src/gen/cri/runtime/v1/api.js";
import { NotFoundError } from "../../../src/util/errors.js";
import { addCreatedContainer, addPod, addRunningContainer, type World, world } from "./fakes.js";

let w: World;
beforeEach(() => {
  w = world();
  // image records of one generation: an image_ref looked up once is kept on the entry
  (w.containers.images as { generation?: number }).generation = 1;
});
afterEach(() => w.close());

test("a running container: after the first (looked-up) status, the poll answers the same kept message", async () => {
  const pod = addPod(w);
  const { id } = addRunningContainer(w, pod);
  const first = await containerStatus(w.containers, id, false);
  const polled = polledContainerStatus(w.containers, id);
  assert.ok(polled, "answered without a promise once image_ref is kept");
  assert.equal(polled, first.status);
  assert.equal(polled.state, ContainerState.CONTAINER_RUNNING);
  // by a unique prefix too, as containerStatus resolves it
  assert.equal(polledContainerStatus(w.containers, id.slice(0, 10)), first.status);
});

test("a container being created is left to containerStatus, which refuses it with NOT_FOUND", async () => {
  const pod = addPod(w);
  const id = "creating".padEnd(64, "0");
  addCreatedContainer(w, pod, id);
  await containerStatus(w.containers, id, false); // its image_ref is kept from here on
  assert.ok(polledContainerStatus(w.containers, id));
  // the same entry while CreateContainer has not returned it (an NRI plugin may still refuse it)
  const e = w.containers.store.get(id)!;
  const created = e.status;
  Object.assign(e, { status: { ...created, phase: "creating" } });
  assert.equal(polledContainerStatus(w.containers, id), undefined);
  await assert.rejects(containerStatus(w.containers, id, false), NotFoundError);
  Object.assign(e, { status: created });
});

test("an unknown id: NotFoundError, as containerStatus", () => {
  assert.throws(() => polledContainerStatus(w.containers, "nope"), NotFoundError);
});
