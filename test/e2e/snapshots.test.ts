// Snapshotters: layers applied into overlay and native snapshots give the same tree; the
// overlay one is mounted for real.
import { test } from "node:test";
import assert from "node:assert/strict";
import { lstat, mkdir, mkdtemp, readFile, readdir, readlink, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { openDatabase } from "../../src/metadata/db.js";
import { createSnapshotter, mountAll, unmountAll, type Snapshotter } from "../../src/snapshots/index.js";
import { applyLayer } from "../../src/images/unpack.js";
import { chainIds } from "../../src/images/manifest.js";
import { AlreadyExistsError, FailedPreconditionError } from "../../src/util/errors.js";
import { makeLayer, type EntrySpec } from "../helpers/images.js";

const layers: EntrySpec[][] = [
  [
    { name: "etc/", type: "directory" },
    { name: "etc/os-release", content: "v1\n" },
    { name: "etc/hosts", content: "127.0.0.1 localhost\n" },
    { name: "var/", type: "directory" },
    { name: "var/cache/", type: "directory" },
    { name: "var/cache/a", content: "a" },
    { name: "var/cache/sub/", type: "directory" },
    { name: "var/cache/sub/b", content: "b" },
    { name: "bin/", type: "directory" },
    { name: "bin/tool", content: "tool", mode: 0o755 },
    { name: "lib", type: "symlink", linkname: "usr/lib" },
  ],
  [
    { name: "etc/.wh.hosts" },
    { name: "etc/os-release", content: "v2\n" },
    { name: "var/cache/.wh..wh..opq" },
    { name: "var/cache/fresh", content: "fresh" },
    { name: "bin/.wh.tool" },
    { name: "bin/tool2", content: "t2", mode: 0o755 },
  ],
  [
    { name: "etc/hosts", content: "back\n" },
    { name: "opt/app/", type: "directory" },
    { name: "opt/app/run", content: "run", mode: 0o700 },
  ],
];

/** Relative path -> description of what is there, for comparing whole trees. */
async function treeOf(dir: string, prefix = ""): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const name of (await readdir(dir)).sort()) {
    const p = join(dir, name);
    const rel = prefix + name;
    const st = await lstat(p);
    if (st.isDirectory()) {
      out[rel + "/"] = "dir";
      Object.assign(out, await treeOf(p, rel + "/"));
    } else if (st.isSymbolicLink()) out[rel] = `-> ${await readlink(p)}`;
    else out[rel] = `${(st.mode & 0o777).toString(8)} ${await readFile(p, "utf8")}`;
  }
  return out;
}

const expected = {
  "bin/": "dir",
  "bin/tool2": "755 t2",
  "etc/": "dir",
  "etc/hosts": "644 back\n",
  "etc/os-release": "644 v2\n",
  lib: "-> usr/lib",
  "opt/": "dir",
  "opt/app/": "dir",
  "opt/app/run": "700 run",
  "var/": "dir",
  "var/cache/": "dir",
  "var/cache/fresh": "644 fresh",
};

async function unpackAll(sn: Snapshotter): Promise<string> {
  const built = await Promise.all(layers.map((l) => makeLayer(l)));
  const chain = chainIds(built.map((b) => b.diffId));
  for (let i = 0; i < built.length; i++) {
    const key = `extract ${chain[i]}`;
    await sn.prepare(key, i > 0 ? chain[i - 1] : undefined);
    await applyLayer(Readable.from([built[i].blob]), sn.applyDir(key), {
      whiteouts: sn.whiteouts,
      expectedDiffId: built[i].diffId,
    });
    await sn.commit(chain[i], key);
  }
  return chain[chain.length - 1];
}

for (const name of ["overlayfs", "native"]) {
  test(`${name}: a multi-layer image with deletions and opaque dirs gives exactly the expected tree`, async () => {
    const state = await mkdtemp(join(tmpdir(), `berth-snap-${name}-`));
    const target = join(state, "rootfs");
    await mkdir(target);
    const db = openDatabase(join(state, "meta.db"));
    let mounted = false;
    try {
      const sn = createSnapshotter(name, db, state);
      const top = await unpackAll(sn);
      const mounts = await sn.prepare("container", top);
      assert.equal(mounts[0].type, name === "overlayfs" ? "overlay" : "bind");
      mountAll(mounts, target);
      mounted = true;
      assert.deepEqual(await treeOf(target), expected);
      // the container's writes land in its own snapshot, not in the image layers
      await writeFile(join(target, "etc/new"), "x");
      unmountAll(target);
      mounted = false;
      assert.ok((await sn.usage("container")).inodes >= 1);
      // a second container on the same layers does not see the first one's write
      mountAll(await sn.prepare("container-2", top), target);
      mounted = true;
      assert.deepEqual(await treeOf(target), expected);
      unmountAll(target);
      mounted = false;
      // single-layer read-only view
      const chainFirst = sn.list().find((s) => s.kind === "committed" && !s.parent)!.key;
      const view = await sn.view("view", chainFirst);
      assert.equal(view[0].type, "bind");
      assert.ok(view[0].options.includes("ro"));
      // remove refuses a snapshot with children
      await assert.rejects(sn.remove(top), FailedPreconditionError);
      await assert.rejects(sn.prepare("container", top), AlreadyExistsError);
      const u = await sn.usage(top);
      assert.ok(u.size > 0 && u.inodes > 0);
      for (const k of ["container", "container-2", "view"]) await sn.remove(k);
      // now leaves first
      const committed = sn
        .list()
        .map((s) => s.key)
        .reverse();
      for (const k of committed) await sn.remove(k);
      assert.deepEqual(sn.list(), []);
      assert.deepEqual(await readdir(join(state, "snapshots", name, "snapshots")), []);
    } finally {
      if (mounted) unmountAll(target);
      db.close();
      await rm(state, { recursive: true, force: true });
    }
  });
}

test("cleanup removes snapshot directories no record names", async () => {
  const state = await mkdtemp(join(tmpdir(), "berth-snap-cleanup-"));
  const db = openDatabase(join(state, "meta.db"));
  try {
    const sn = createSnapshotter("overlayfs", db, state);
    await sn.prepare("a");
    await mkdir(join(state, "snapshots/overlayfs/snapshots/999/fs"), { recursive: true });
    await mkdir(join(state, "snapshots/overlayfs/new-deadbeef"), { recursive: true });
    await sn.cleanup();
    assert.deepEqual(await readdir(join(state, "snapshots/overlayfs/snapshots")), ["1"]);
    assert.deepEqual((await readdir(join(state, "snapshots/overlayfs"))).sort(), ["snapshots"]);
  } finally {
    db.close();
    await rm(state, { recursive: true, force: true });
  }
});
