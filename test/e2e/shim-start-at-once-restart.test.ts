// berth's shim killed (SIGKILL) between berthd's Create with the start-at-once metadata and its
// Start, then started again as containerd or berthd does (the shim's `start`): the new shim
// re-adopts the task and keeps the contract of a task Create ran, as for a plain created one
// across the same restart, side by side here. It reads CREATED; Start confirms it and answers its
// pid; the events are TaskCreate, TaskStart, then TaskExit, even for a process that ended while
// no shim served it; Kill and Delete without Start work as for a created task, and Delete leaves
// no process, mount, runtime state or shim state dir. Real shim, monitors, runc and busybox.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

import { Status } from "../../src/gen/containerd/types/task/task.js";
import { groupId, processStateDir } from "../../src/shim/paths.js";
import { START_AT_ONCE_METADATA_KEY } from "../../src/shim/start-at-once.js";
import { makeBundle } from "../helpers/bundle.js";
import { ShimHarness, alive, until, type TaskClient } from "../helpers/shim.js";
import type { TtrpcClient } from "../../src/ttrpc/index.js";

let h: ShimHarness;

before(async () => {
  h = await ShimHarness.create("berth-at-once-restart");
});

after(async () => {
  await h.cleanup();
});

/** The metadata berthd sends with a Create it starts at once. */
function atOnce() {
  return { metadata: { ...h.md.metadata, [START_AT_ONCE_METADATA_KEY]: "1" } };
}

/** A Create request whose rootfs is bind-mounted on <bundle>/rootfs by the shim. */
function createReq(id: string, args: string[]) {
  const dir = join(h.root, id);
  const src = join(h.root, `${id}-src`);
  makeBundle(dir, { args, rootfsDir: src });
  return {
    id,
    bundle: dir,
    rootfs: [{ type: "bind", source: src, target: "", options: ["rbind", "rw"] }],
    terminal: false,
    stdin: "",
    stdout: "",
    stderr: "",
    checkpoint: "",
    parentCheckpoint: "",
    options: h.options(),
  };
}

const init = (id: string) => ({ id, execId: "" });

/**
 * Starts the serving shim (or finds it) for the task's bundle, which must exist; returns a
 * client. Each test has its own shim (the caller's address names the shim's group), so that
 * one test's failure leaves no task in the next test's shim.
 */
async function shimFor(id: string, address: string): Promise<{ task: TaskClient; conn: TtrpcClient }> {
  return h.connect(h.start(join(h.root, id), id, address));
}

/** SIGKILLs the serving shim, then runs the shim's `start` again, as a caller would; returns the new client. */
async function killAndRestart(task: TaskClient, conn: TtrpcClient, id: string, address: string): Promise<TaskClient> {
  const { shimPid } = await task.connect({ id }, h.md);
  process.kill(shimPid, "SIGKILL");
  await until(() => !alive(shimPid), "the shim to die");
  conn.close();
  const again = await shimFor(id, address);
  assert.notEqual((await again.task.connect({ id }, h.md)).shimPid, shimPid);
  return again.task;
}

async function shutdown(task: TaskClient): Promise<void> {
  const { shimPid } = await task.connect({ id: "" }, h.md);
  await task.shutdown({ id: "", now: false }, h.md);
  await until(() => !alive(shimPid), "the shim to exit");
}

function mounted(id: string): boolean {
  return readFileSync("/proc/self/mountinfo", "utf8").includes(join(h.root, id, "rootfs"));
}

function stateDir(id: string, address: string): string {
  return processStateDir(h.socketDir, groupId(h.namespace, address), id, "");
}

/** Monitors still running for a process state dir. */
function monitorsOf(dir: string): number[] {
  return h
    .ourProcesses()
    .filter((p) => p.kind === "monitor")
    .filter((p) => {
      try {
        return readFileSync(`/proc/${p.pid}/cmdline`, "utf8").split("\0").includes(dir);
      } catch {
        return false; // gone meanwhile
      }
    })
    .map((p) => p.pid);
}

test("restart before Start: CREATED; Start confirms, then TaskStart and TaskExit, also for a process that ended before", async () => {
  const quick = createReq("quick-at-once", ["sh", "-c", "exit 3"]);
  const plain = createReq("quick-two-step", ["sh", "-c", "exit 3"]);
  const running = createReq("running-at-once", ["sleep", "1000"]);
  const address = join(h.root, "quick.sock");
  const first = await shimFor("quick-at-once", address);
  const { pid } = await first.task.create(quick, atOnce());
  const plainPid = (await first.task.create(plain, h.md)).pid;
  const runningPid = (await first.task.create(running, atOnce())).pid;
  // it ran and ended under its monitor before the shim died
  await until(() => !alive(pid), "the process to end");
  const task = await killAndRestart(first.task, first.conn, "quick-at-once", address);

  for (const [id, p] of [
    ["quick-at-once", pid],
    ["quick-two-step", plainPid],
  ] as const) {
    const st = await task.state(init(id), h.md);
    assert.equal(st.status, Status.CREATED, `${id} is created`);
    assert.equal(st.pid, p);
    assert.deepEqual(h.topics(id), ["/tasks/create"], `${id}: nothing told since Create`);
    assert.equal((await task.start(init(id), h.md)).pid, p);
    assert.equal((await task.wait(init(id), h.md)).exitStatus, 3);
    assert.equal((await task.state(init(id), h.md)).status, Status.STOPPED);
    await assert.rejects(task.start(init(id), h.md), /already started/);
    await until(() => h.topics(id).includes("/tasks/exit"), `${id}'s exit event`);
    assert.deepEqual(h.topics(id), ["/tasks/create", "/tasks/start", "/tasks/exit"]);
    assert.equal((await task.delete(init(id), h.md)).exitStatus, 3);
    assert.equal(mounted(id), false);
  }
  // one that still runs: Start confirms it as running, its exit comes when it is killed
  assert.equal((await task.state(init("running-at-once"), h.md)).status, Status.CREATED);
  assert.equal((await task.start(init("running-at-once"), h.md)).pid, runningPid);
  assert.equal((await task.state(init("running-at-once"), h.md)).status, Status.RUNNING);
  await task.kill({ ...init("running-at-once"), signal: 9, all: false }, h.md);
  assert.equal((await task.wait(init("running-at-once"), h.md)).exitStatus, 137);
  await task.delete(init("running-at-once"), h.md);
  await until(() => h.topics("running-at-once").includes("/tasks/delete"), "the delete event");
  assert.deepEqual(h.topics("running-at-once"), ["/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"]);
  await shutdown(task);
});

test("restart before Start, then Delete without Start: the process ends, nothing is left behind", async () => {
  const ids = ["dropped-at-once", "dropped-two-step"];
  const reqs = ids.map((id) => createReq(id, ["sleep", "1000"]));
  const address = join(h.root, "dropped.sock");
  const first = await shimFor(ids[0]!, address);
  const pids = [(await first.task.create(reqs[0]!, atOnce())).pid, (await first.task.create(reqs[1]!, h.md)).pid];
  const task = await killAndRestart(first.task, first.conn, ids[0]!, address);
  for (const [i, id] of ids.entries()) {
    assert.ok(alive(pids[i]!), `${id} lives on under its monitor`);
    assert.equal((await task.state(init(id), h.md)).status, Status.CREATED, `${id} is created`);
    await task.delete(init(id), h.md);
    assert.equal(alive(pids[i]!), false, `${id}'s process is gone`);
    assert.equal(mounted(id), false, `${id}'s rootfs is unmounted`);
    assert.equal(existsSync(join(h.runcRoot, id)), false, `runc's state of ${id} is gone`);
    assert.equal(existsSync(stateDir(id, address)), false, `the shim's state dir of ${id} is gone`);
    assert.deepEqual(monitorsOf(stateDir(id, address)), [], `no monitor of ${id} is left`);
    await assert.rejects(task.state(init(id), h.md), /not found/);
    await until(() => h.topics(id).includes("/tasks/delete"), `${id}'s delete event`);
    assert.deepEqual(h.topics(id), ["/tasks/create", "/tasks/exit", "/tasks/delete"]);
  }
  await shutdown(task);
});

test("restart before Start, then Kill without Start: the exit is told, Start is refused, Delete works", async () => {
  const ids = ["killed-at-once", "killed-two-step"];
  const reqs = ids.map((id) => createReq(id, ["sleep", "1000"]));
  const address = join(h.root, "killed.sock");
  const first = await shimFor(ids[0]!, address);
  await first.task.create(reqs[0]!, atOnce());
  await first.task.create(reqs[1]!, h.md);
  const task = await killAndRestart(first.task, first.conn, ids[0]!, address);
  for (const id of ids) {
    await task.kill({ ...init(id), signal: 9, all: false }, h.md);
    assert.equal((await task.wait(init(id), h.md)).exitStatus, 137);
    assert.equal((await task.state(init(id), h.md)).status, Status.STOPPED);
    await assert.rejects(task.start(init(id), h.md), /already started/);
    await task.delete(init(id), h.md);
    await until(() => h.topics(id).includes("/tasks/delete"), `${id}'s delete event`);
    assert.deepEqual(h.topics(id), ["/tasks/create", "/tasks/exit", "/tasks/delete"]);
  }
  await shutdown(task);
});

test("a Kill before the restart that the process survived: its exit, later, is told without a Start", async () => {
  // ignores SIGUSR1 (the Kill), ends when /go appears
  const req = createReq("survivor", ["sh", "-c", "trap '' USR1; while [ ! -e /go ]; do sleep 0.1; done; exit 7"]);
  const address = join(h.root, "survivor.sock");
  const first = await shimFor("survivor", address);
  await first.task.create(req, atOnce());
  await first.task.kill({ ...init("survivor"), signal: 10, all: false }, h.md);
  const task = await killAndRestart(first.task, first.conn, "survivor", address);
  assert.equal((await task.state(init("survivor"), h.md)).status, Status.CREATED);
  writeFileSync(join(h.root, "survivor-src", "go"), "");
  // as before the restart: the Kill let the exit through, no Start needed
  await until(() => h.topics("survivor").includes("/tasks/exit"), "the exit event");
  assert.equal((await task.wait(init("survivor"), h.md)).exitStatus, 7);
  assert.deepEqual(h.topics("survivor"), ["/tasks/create", "/tasks/exit"]);
  await task.delete(init("survivor"), h.md);
  await shutdown(task);
});
