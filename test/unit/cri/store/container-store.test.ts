// ContainerStore.bySandbox (src/cri/store/container-store.ts): a pod's containers, in the order
// they were created, through inserts, deletes and a reload from the metadata (berthd restart);
// PodSandboxStatus reads it for every pod kubelet polls.
import assert from "node:assert/strict";
import { test } from "node:test";
import { ContainerConfig } from "../../../../src/gen/cri/runtime/v1/api.js";
import { ContainerMetadata } from "../../../../src/metadata/containers.js";
import { openDatabase } from "../../../../src/metadata/db.js";
import { ContainerStore } from "../../../../src/cri/store/index.js";

const hex = (n: number) => n.toString(16).padStart(64, "0");
const POD_A = hex(0xa);
const POD_B = hex(0xb);

function insert(store: ContainerStore, n: number, sandboxId: string): void {
  store.insert({
    id: hex(0x100 + n),
    sandboxId,
    name: `c${n}`,
    attempt: 0,
    config: Buffer.from(ContainerConfig.encode(ContainerConfig.fromPartial({})).finish()),
    imageRef: "busybox",
    imageId: "sha256:" + "1".repeat(64),
    logPath: "",
    stopSignal: "SIGTERM",
    createdAt: BigInt(n),
  });
}

const names = (store: ContainerStore, pod: string) => store.bySandbox(pod).map((e) => e.info.name);

test("bySandbox lists a pod's containers in creation order through inserts, deletes and a reload", () => {
  const db = openDatabase(":memory:");
  const store = new ContainerStore(new ContainerMetadata(db));
  assert.deepEqual(names(store, POD_A), []);
  for (const [n, pod] of [
    [1, POD_A],
    [2, POD_B],
    [3, POD_A],
    [4, POD_A],
  ] as const)
    insert(store, n, pod);
  assert.deepEqual(names(store, POD_A), ["c1", "c3", "c4"]);
  assert.deepEqual(names(store, POD_B), ["c2"]);

  store.delete(hex(0x103));
  store.delete(hex(0x102));
  assert.deepEqual(names(store, POD_A), ["c1", "c4"]);
  assert.deepEqual(names(store, POD_B), []);
  // the list handed out is a copy: the caller may keep it while the store changes
  const held = store.bySandbox(POD_A);
  insert(store, 5, POD_A);
  assert.equal(held.length, 2);

  // A new store over the same database (a restart) finds the same pods' containers.
  const reloaded = new ContainerStore(new ContainerMetadata(db));
  assert.deepEqual(names(reloaded, POD_A).sort(), ["c1", "c4", "c5"]);
  assert.deepEqual(names(reloaded, POD_B), []);
  insert(reloaded, 6, POD_B);
  assert.deepEqual(names(reloaded, POD_B), ["c6"]);
  assert.equal(reloaded.bySandbox(POD_A)[0]!.id, reloaded.get(hex(0x101))!.id);
});
