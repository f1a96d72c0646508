// The trash (src/cri/trash.ts) and RemoveContainer over it (container/remove.ts): directories
// leave their per-id place at once, are deleted in the background, settled() waits for that,
// what a killed berthd left in the trash is emptied at the next start, and the container's
// record goes in one transaction with its snapshot's.
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, test } from "node:test";
import { cleanupContainerFiles, removeContainer } from "../../../src/cri/container/remove.js";
import { ContainerMetadata } from "../../../src/metadata/containers.js";
import { NativeSnapshotter } from "../../../src/snapshots/native.js";
import { FailedPreconditionError } from "../../../src/util/errors.js";
import { Trash, mountsBelow } from "../../../src/cri/trash.js";
import { silentLogger } from "../../../src/util/log.js";
import { type World, addCreatedContainer, addPod, world } from "./fakes.js";

function tree(dir: string): void {
  mkdirSync(join(dir, "a", "b"), { recursive: true });
  writeFileSync(join(dir, "a", "b", "f"), "x".repeat(1000));
  writeFileSync(join(dir, "g"), "y");
}

describe("trash", () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "berth-trash-"));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  test("put moves a directory away at once and deletes it in the background; settled waits for it", async () => {
    const trash = new Trash(join(dir, "trash"), silentLogger());
    const victims = [join(dir, "one"), join(dir, "two")];
    for (const v of victims) tree(v);
    for (const v of victims) assert.equal(trash.put(v), true);
    for (const v of victims) assert.equal(existsSync(v), false, `${v} still in its place`);
    await trash.settled();
    assert.equal(trash.idle, true);
    assert.deepEqual(readdirSync(join(dir, "trash")), []);
  });

  test("put of a missing path is a no-op (an interrupted removal called again)", async () => {
    const trash = new Trash(join(dir, "trash"), silentLogger());
    assert.equal(trash.put(join(dir, "none")), false);
    await trash.settled();
  });

  test("removeLater deletes what its owner already renamed, tracked the same way", async () => {
    const trash = new Trash(join(dir, "trash"), silentLogger());
    const doomed = join(dir, "removed-7-abcd");
    tree(doomed);
    trash.removeLater(doomed);
    assert.equal(trash.idle, false);
    await trash.settled();
    assert.equal(existsSync(doomed), false);
  });

  test("empty() deletes what a killed berthd left in the trash; a missing trash is fine", async () => {
    const left = new Trash(join(dir, "trash"), silentLogger());
    assert.deepEqual(await left.empty(), []);
    // A berthd killed after its renames, before its background removals ran.
    mkdirSync(join(dir, "trash"));
    tree(join(dir, "trash", "x1"));
    tree(join(dir, "trash", "x2"));
    const next = new Trash(join(dir, "trash"), silentLogger());
    assert.equal((await next.empty()).length, 2);
    assert.deepEqual(readdirSync(join(dir, "trash")), []);
  });

  test("mountsBelow names the mount point itself and those under it, not a sibling with the same prefix", () => {
    assert.ok(mountsBelow("/proc").includes("/proc"));
    assert.ok(!mountsBelow("/pro").includes("/proc"));
  });
});

describe("RemoveContainer's cleanup", () => {
  let w: World;
  let doomedSnapshot: string;
  let detached: string[];
  beforeEach(() => {
    w = world();
    detached = [];
    doomedSnapshot = join(w.containers.bundles.dir("x"), "..", "..", "snapshot-removed-1");
    w.containers.images.forgetRootfs = (key: string) => {
      detached.push(key);
      return () => {
        tree(doomedSnapshot); // what the snapshotter renamed out of the way
        return doomedSnapshot;
      };
    };
  });
  afterEach(() => w.close());

  /** A created container (never started: no task) with a bundle, a spec and fifos on disk. */
  async function created(): Promise<string> {
    const pod = addPod(w);
    const id = `rm${Math.random().toString(16).slice(2)}`.padEnd(64, "0");
    addCreatedContainer(w, pod, id);
    const b = w.containers.bundles;
    await b.create(id, { rootfs: true });
    b.writeSpec(id, { ociVersion: "1.0.2", process: { args: ["true"], cwd: "/" }, root: { path: "rootfs" } } as never);
    mkdirSync(b.io(id).dir, { recursive: true });
    writeFileSync(b.io(id).stdout, "");
    return id;
  }

  test("bundle, io dir and snapshot leave their places before it returns, and are gone once the trash settles", async () => {
    const id = await created();
    const b = w.containers.bundles;
    await removeContainer(w.containers, id);
    assert.equal(w.containers.store.get(id), undefined, "the record is left");
    assert.deepEqual(detached, [id]);
    assert.equal(existsSync(b.dir(id)), false, "the bundle is still in bundles/");
    assert.equal(existsSync(b.io(id).dir), false, "the io dir is still in io/");
    assert.equal(b.tryReadSpec(id), undefined, "the spec is still cached");
    await w.containers.trash.settled();
    assert.equal(existsSync(doomedSnapshot), false);
    assert.deepEqual(readdirSync(w.containers.trash.dir), []);
    // Called again (a removal interrupted after its moves): nothing to do, no error.
    await cleanupContainerFiles(w.containers, id);
    await w.containers.trash.settled();
  });

  test("the record and the snapshot's go in one transaction: a snapshot that cannot go keeps the record", async () => {
    const id = await created();
    w.containers.images.forgetRootfs = () => {
      throw new FailedPreconditionError("snapshot has children");
    };
    await assert.rejects(removeContainer(w.containers, id), FailedPreconditionError);
    assert.ok(w.containers.store.get(id), "the record went without its snapshot's");
    const reloaded = new ContainerMetadata(w.db).get(id);
    assert.ok(reloaded, "the row was deleted without its snapshot's");
    await w.containers.trash.settled();
  });

  test("a real snapshot: when the deletion's commit fails (a full disk), both rows and the snapshot's files stay; the next RemoveContainer finishes", async () => {
    const id = await created();
    const root = join(w.containers.trash.dir, "..", "snap");
    const snap = new NativeSnapshotter(w.db, root);
    await snap.prepare(id);
    w.containers.images.forgetRootfs = (key: string) => (snap.exists(key) ? snap.forget(key) : undefined);
    // The next container-store transaction runs its body, then fails as a full disk fails its COMMIT.
    type Tx = <T>(fn: () => T, opts?: { synced?: boolean }) => T;
    const meta = (w.containers.store as unknown as { meta: { transaction: Tx } }).meta;
    const real = meta.transaction.bind(meta);
    meta.transaction = (<T>(fn: () => T, opts?: { synced?: boolean }): T => {
      meta.transaction = real;
      return real(() => {
        fn();
        throw Object.assign(new Error("database or disk is full"), { code: "SQLITE_FULL" });
      }, opts);
    }) as Tx;
    await assert.rejects(removeContainer(w.containers, id), /disk is full/);
    assert.ok(w.containers.store.get(id), "the container's record stays");
    assert.ok(new ContainerMetadata(w.db).get(id), "the container's row stays");
    assert.ok(snap.exists(id), "the snapshot's row stays");
    assert.deepEqual(readdirSync(join(root, "snapshots")), ["1"], "the snapshot's directory stays where its row says");
    await removeContainer(w.containers, id);
    assert.equal(w.containers.store.get(id), undefined);
    assert.equal(snap.exists(id), false);
    await w.containers.trash.settled();
    assert.deepEqual(readdirSync(join(root, "snapshots")), []);
    assert.deepEqual(
      readdirSync(root).filter((n) => n !== "snapshots"),
      [],
      "nothing moved aside is left",
    );
  });
});
