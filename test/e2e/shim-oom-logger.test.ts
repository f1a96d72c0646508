// berth's shim end to end for two things containerd users rely on: an OOM-killed container
// is reported (exit 137 plus a /tasks/oom event), and a binary:// logger gets the
// container's stdout/stderr under containerd's rules (fd 3/4, ready pipe on fd 5,
// CONTAINER_ID/CONTAINER_NAMESPACE in its env, URI query as argv).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, readFileSync, readdirSync, rmdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

import { TaskOOM } from "../../src/gen/containerd/events/task.js";
import { makeBundle } from "../helpers/bundle.js";
import { ShimHarness, until, type TaskClient } from "../helpers/shim.js";

let h: ShimHarness;
let task: TaskClient;
const cgroupParent = `/berth-test-oom-${process.pid}`;

before(async () => {
  h = await ShimHarness.create();
  const b = join(h.root, "first");
  makeBundle(b, { args: ["true"] });
  ({ task } = await h.connect(h.start(b, "first")));
});

after(async () => {
  await h.cleanup();
  // runc delete removes the container's cgroups; the parent we named is ours to remove.
  for (const ctrl of readdirSync("/sys/fs/cgroup")) {
    try {
      rmdirSync(join("/sys/fs/cgroup", ctrl, cgroupParent.slice(1)));
    } catch {
      // not there on this controller (or already gone)
    }
  }
});

function createReq(id: string, dir: string, io: { stdout?: string; stderr?: string } = {}) {
  return {
    id,
    bundle: dir,
    rootfs: [],
    terminal: false,
    stdin: "",
    stdout: io.stdout ?? "",
    stderr: io.stderr ?? "",
    checkpoint: "",
    parentCheckpoint: "",
    options: h.options(),
  };
}

test("a container over its memory limit is OOM-killed: wait says 137 and /tasks/oom is published", async () => {
  const id = "oom";
  const dir = join(h.root, id);
  makeBundle(dir, {
    // doubles a shell variable until the memory cgroup's limit is hit
    args: ["sh", "-c", "x=a; while true; do x=$x$x; done"],
    memoryLimit: 16 * 1024 * 1024,
    cgroupsPath: `${cgroupParent}/${id}`,
  });
  await task.create(createReq(id, dir), h.md);
  await task.start({ id, execId: "" }, h.md);
  const w = await task.wait({ id, execId: "" }, h.md);
  assert.equal(w.exitStatus, 137);

  // events are forwarded asynchronously; wait until both have arrived
  await until(() => h.topics(id).includes("/tasks/oom") && h.topics(id).includes("/tasks/exit"), "oom and exit events");
  const oom = h.events.find((e) => e.topic === "/tasks/oom")!;
  assert.equal(oom.event?.typeUrl, "containerd.events.TaskOOM");
  assert.equal(TaskOOM.decode(oom.event!.value).containerId, id);
  assert.equal(oom.namespace, h.namespace);
  const topics = h.topics(id);
  assert.deepEqual(
    topics.filter((t) => t !== "/tasks/oom"),
    ["/tasks/create", "/tasks/start", "/tasks/exit"],
  );

  await task.delete({ id, execId: "" }, h.md);
  // runc delete took the container's memory cgroup with it
  assert.throws(() => readdirSync(join("/sys/fs/cgroup/memory", cgroupParent.slice(1), id)));
});

test("a binary:// logger gets stdout on fd 3, stderr on fd 4, the container's id and namespace, and query args", async () => {
  const id = "logged";
  const dir = join(h.root, id);
  makeBundle(dir, { args: ["sh", "-c", "echo to-stdout; echo to-stderr >&2; echo more-stdout; exit 0"] });
  const out = join(h.root, "logger-out");
  const logger = join(h.root, "logger.sh");
  // Signals ready by closing fd 5, records its env and argv, then copies both streams.
  writeFileSync(
    logger,
    [
      "#!/bin/sh",
      'OUT="$2"',
      'echo "$CONTAINER_ID $CONTAINER_NAMESPACE" > "$OUT.env"',
      'echo "$*" > "$OUT.args"',
      "exec 5>&-",
      '/bin/cat <&3 > "$OUT.stdout" &',
      '/bin/cat <&4 > "$OUT.stderr" &',
      "wait",
      'echo done > "$OUT.done"',
      "",
    ].join("\n"),
  );
  chmodSync(logger, 0o755);
  const uri = `binary://${logger}?out=${encodeURIComponent(out)}`;
  await task.create(createReq(id, dir, { stdout: uri, stderr: uri }), h.md);
  await task.start({ id, execId: "" }, h.md);
  assert.equal((await task.wait({ id, execId: "" }, h.md)).exitStatus, 0);
  // the logger finishes on its own once it sees EOF on both streams
  await until(() => {
    try {
      return readFileSync(`${out}.done`, "utf8");
    } catch {
      return undefined;
    }
  }, "logger to finish");
  assert.equal(readFileSync(`${out}.stdout`, "utf8"), "to-stdout\nmore-stdout\n");
  assert.equal(readFileSync(`${out}.stderr`, "utf8"), "to-stderr\n");
  assert.equal(readFileSync(`${out}.env`, "utf8"), `${id} ${h.namespace}\n`);
  assert.equal(readFileSync(`${out}.args`, "utf8"), `out ${out}\n`);
  await task.delete({ id, execId: "" }, h.md);
});
