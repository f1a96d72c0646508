// Id resolution (src/cri/ids.ts) as the pod and container stores use it: a full id is a map
// hit, a shorter ref names the one id it is a prefix of, an ambiguous prefix and an unknown
// ref are refused with their gRPC kinds, and an unknown full-length id is refused without a
// scan of every id. The stores run over a real (in-memory) metadata database.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ID_LENGTH, resolveId, type IdSet } from "../../../src/cri/ids.js";
import { ContainerStore, SandboxStore } from "../../../src/cri/store/index.js";
import { ContainerMetadata } from "../../../src/metadata/containers.js";
import { openDatabase } from "../../../src/metadata/db.js";
import { PodMetadata } from "../../../src/metadata/pods.js";
import { ContainerConfig, PodSandboxConfig } from "../../../src/gen/cri/runtime/v1/api.js";
import { InvalidArgumentError, NotFoundError } from "../../../src/util/errors.js";

const id = (head: string) => head + "0".repeat(ID_LENGTH - head.length);
const A = id("ab12"); // shares "ab1" with B
const B = id("ab13");
const C = id("cd");

/** A Map's id set that counts how often it was scanned. */
function counted(ids: string[]): IdSet & { scans: number } {
  const m = new Map(ids.map((i) => [i, true]));
  const set = {
    scans: 0,
    has: (i: string) => m.has(i),
    keys: () => {
      set.scans++;
      return m.keys();
    },
  };
  return set;
}

describe("resolveId", () => {
  test("a full id is found without scanning", () => {
    const ids = counted([A, B, C]);
    assert.equal(resolveId(B, "container", ids), B);
    assert.equal(ids.scans, 0);
  });

  test("a unique prefix names its id", () => {
    assert.equal(resolveId("ab12", "container", counted([A, B, C])), A);
    assert.equal(resolveId("c", "container", counted([A, B, C])), C);
  });

  test("an exact id wins over a longer id it prefixes", () => {
    assert.equal(resolveId("ab1", "container", counted(["ab1", "ab12"])), "ab1");
  });

  test("an ambiguous prefix is InvalidArgument, naming how many match", () => {
    assert.throws(
      () => resolveId("ab1", "pod sandbox", counted([A, B, C])),
      (e: unknown) =>
        e instanceof InvalidArgumentError &&
        e.message === `pod sandbox id prefix "ab1" is ambiguous: 2 pod sandboxs match`,
    );
  });

  test("an unknown prefix is NotFound", () => {
    assert.throws(
      () => resolveId("ef", "container", counted([A, B, C])),
      (e: unknown) => e instanceof NotFoundError && e.message === `container "ef" not found`,
    );
  });

  test("an unknown full-length id is NotFound without a scan", () => {
    const ids = counted([A, B, C]);
    assert.throws(() => resolveId(id("ef"), "container", ids), NotFoundError);
    assert.equal(ids.scans, 0);
  });

  test("an empty ref is InvalidArgument", () => {
    assert.throws(() => resolveId("", "container", counted([A])), InvalidArgumentError);
  });
});

describe("the stores resolve refs the same way", () => {
  const db = openDatabase(":memory:");
  const pods = new SandboxStore(new PodMetadata(db));
  const containers = new ContainerStore(new ContainerMetadata(db));
  for (const [i, pid] of [A, B, C].entries()) {
    pods.insert({
      id: pid,
      name: `p${i}`,
      namespace: "ns",
      uid: `u${i}`,
      attempt: 0,
      config: Buffer.from(PodSandboxConfig.encode(PodSandboxConfig.fromPartial({})).finish()),
      createdAt: BigInt(i + 1),
      runtimeHandler: "",
      netnsPath: "",
      ips: [],
      podDir: "",
    });
    containers.insert({
      id: pid,
      sandboxId: C,
      name: `c${i}`,
      attempt: 0,
      config: Buffer.from(ContainerConfig.encode(ContainerConfig.fromPartial({})).finish()),
      imageRef: "busybox",
      imageId: "sha256:" + "1".repeat(64),
      logPath: "",
      stopSignal: "SIGTERM",
      createdAt: BigInt(i + 1),
    });
  }

  for (const [kind, store] of [
    ["pod sandbox", pods],
    ["container", containers],
  ] as const) {
    test(`${kind}: full id, unique prefix, ambiguous prefix, unknown`, () => {
      assert.equal(store.resolve(A).id, A);
      assert.equal(store.resolve("ab13").id, B);
      assert.throws(() => store.resolve("ab"), /is ambiguous: 2/);
      assert.throws(() => store.resolve(id("99")), NotFoundError);
      assert.throws(() => store.resolve("99"), NotFoundError);
    });
  }
});
