// berth's shim asked, by berthd's Create metadata, to start a task at once: runc runs it in one
// command (`run --detach`) and the Start that follows only confirms it. Seen from the caller,
// everything is as after create then start: the task is CREATED until Start, Start answers its
// pid, the events come in the order create, start, exit, delete, and an exit that came before
// Start is told only after it. Real shim, monitors, runc and busybox.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";

import { Status } from "../../src/gen/containerd/types/task/task.js";
import { SHIM_VERSION } from "../../src/shim/service.js";
import { START_AT_ONCE_METADATA_KEY, START_CONFIRMED_METADATA_KEY } from "../../src/shim/start-at-once.js";
import { confirmsStartAtCreate } from "../../src/runtime/shim-features.js";
import { makeBundle } from "../helpers/bundle.js";
import { ShimHarness, alive, fifoReader, until, type TaskClient } from "../helpers/shim.js";

let h: ShimHarness;
let task: TaskClient;

before(async () => {
  h = await ShimHarness.create("berth-at-once");
  const b = join(h.root, "first");
  makeBundle(b, { args: ["true"] });
  ({ task } = await h.connect(h.start(b, "first")));
});

after(async () => {
  await h.cleanup();
});

/** The metadata berthd sends with a Create it starts at once. */
function atOnce() {
  return { metadata: { ...h.md.metadata, [START_AT_ONCE_METADATA_KEY]: "1" } };
}

/** The metadata berthd sends with a Create it starts at once and sends no Start for. */
function confirmed() {
  return { metadata: { ...atOnce().metadata, [START_CONFIRMED_METADATA_KEY]: "1" } };
}

const createReq = (id: string, args: string[], stdout = "") => h.createRequest(id, args, { stdout });

/** The command name of a process (runc's init waiting for `start` is "runc:[2:INIT]"). */
function comm(pid: number): string {
  return readFileSync(`/proc/${pid}/comm`, "utf8").trim();
}

test("Create runs the process at once; it is reported created until Start, which answers its pid", async () => {
  const { pid } = await task.create(createReq("sleeper", ["sleep", "1000"]), atOnce());
  assert.ok(pid > 0);
  // The container's own command runs, not runc's init waiting for a start.
  assert.equal(comm(pid), "sleep");
  assert.equal((await task.state({ id: "sleeper", execId: "" }, h.md)).status, Status.CREATED);
  assert.equal((await task.start({ id: "sleeper", execId: "" }, h.md)).pid, pid);
  assert.equal((await task.state({ id: "sleeper", execId: "" }, h.md)).status, Status.RUNNING);
  // A second Start is refused, as for any started task.
  await assert.rejects(task.start({ id: "sleeper", execId: "" }, h.md), /already started/);
  await task.kill({ id: "sleeper", execId: "", signal: 9, all: false }, h.md);
  assert.equal((await task.wait({ id: "sleeper", execId: "" }, h.md)).exitStatus, 137);
  await task.delete({ id: "sleeper", execId: "" }, h.md);
  await until(() => h.topics("sleeper").includes("/tasks/delete"), "delete event");
  assert.deepEqual(h.topics("sleeper"), ["/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"]);
});

test("a process that exits before Start is told only after Start: created until then, exit after TaskStart", async () => {
  const out = fifoReader(join(h.root, "quick.stdout"));
  const { pid } = await task.create(
    createReq("quick", ["sh", "-c", "echo hi; exit 5"], join(h.root, "quick.stdout")),
    atOnce(),
  );
  // It has run and exited (its monitor holds the status) before anyone called Start.
  await until(() => !alive(pid), "the process to end");
  assert.equal(await out, "hi\n");
  const st = await task.state({ id: "quick", execId: "" }, h.md);
  assert.equal(st.status, Status.CREATED);
  assert.equal(h.topics("quick").includes("/tasks/exit"), false);
  assert.equal((await task.start({ id: "quick", execId: "" }, h.md)).pid, pid);
  assert.equal((await task.wait({ id: "quick", execId: "" }, h.md)).exitStatus, 5);
  assert.equal((await task.state({ id: "quick", execId: "" }, h.md)).status, Status.STOPPED);
  assert.equal((await task.delete({ id: "quick", execId: "" }, h.md)).exitStatus, 5);
  await until(() => h.topics("quick").includes("/tasks/delete"), "delete event");
  assert.deepEqual(h.topics("quick"), ["/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"]);
});

test("a task Create ran may be killed and deleted without a Start, as a created one", async () => {
  const { pid } = await task.create(createReq("undone", ["sleep", "1000"]), atOnce());
  await task.kill({ id: "undone", execId: "", signal: 9, all: false }, h.md);
  assert.equal((await task.wait({ id: "undone", execId: "" }, h.md)).exitStatus, 137);
  // Killed before any Start: it cannot be started any more.
  await assert.rejects(task.start({ id: "undone", execId: "" }, h.md), /already started/);
  await task.delete({ id: "undone", execId: "" }, h.md);
  assert.equal(alive(pid), false);
  await until(() => h.topics("undone").includes("/tasks/delete"), "delete event");
  assert.deepEqual(h.topics("undone"), ["/tasks/create", "/tasks/exit", "/tasks/delete"]);
});

test("Delete of a task Create ran and nobody started ends it, as for a created one", async () => {
  const { pid } = await task.create(createReq("dropped", ["sleep", "1000"]), atOnce());
  await task.delete({ id: "dropped", execId: "" }, h.md);
  assert.equal(alive(pid), false);
  await assert.rejects(task.state({ id: "dropped", execId: "" }, h.md), /not found/);
});

test("a command that cannot run fails Create with runc's message and leaves nothing behind", async () => {
  const req = createReq("broken", ["/no/such/binary"]);
  await assert.rejects(task.create(req, atOnce()), /no such file or directory|not found/i);
  await assert.rejects(task.state({ id: "broken", execId: "" }, h.md), /not found/);
  assert.equal(existsSync(join(h.runcRoot, "broken")), false);
});

test("without the metadata Create only creates: runc's init waits for Start", async () => {
  const { pid } = await task.create(createReq("twostep", ["sleep", "1000"]), h.md);
  assert.match(comm(pid), /^runc:\[2:INIT\]$/);
  assert.equal((await task.start({ id: "twostep", execId: "" }, h.md)).pid, pid);
  await until(() => comm(pid) === "sleep", "the command to run after Start");
  await task.kill({ id: "twostep", execId: "", signal: 9, all: false }, h.md);
  assert.equal((await task.wait({ id: "twostep", execId: "" }, h.md)).exitStatus, 137);
  await task.delete({ id: "twostep", execId: "" }, h.md);
});

test("the shim's Connect tells berthd it confirms a start at Create", async () => {
  const { version } = await task.connect({ id: "first" }, h.md);
  assert.equal(version, SHIM_VERSION);
  assert.equal(confirmsStartAtCreate(version), true);
});

test("with the confirmation asked for, Create answers a running task: TaskStart follows TaskCreate, no Start is needed", async () => {
  const { pid } = await task.create(createReq("confirmed", ["sleep", "1000"]), confirmed());
  assert.equal(comm(pid), "sleep");
  assert.equal((await task.state({ id: "confirmed", execId: "" }, h.md)).status, Status.RUNNING);
  await until(() => h.topics("confirmed").includes("/tasks/start"), "start event");
  // It is started: a Start now is refused, as for any started task.
  await assert.rejects(task.start({ id: "confirmed", execId: "" }, h.md), /already started/);
  await task.kill({ id: "confirmed", execId: "", signal: 9, all: false }, h.md);
  assert.equal((await task.wait({ id: "confirmed", execId: "" }, h.md)).exitStatus, 137);
  await task.delete({ id: "confirmed", execId: "" }, h.md);
  await until(() => h.topics("confirmed").includes("/tasks/delete"), "delete event");
  assert.deepEqual(h.topics("confirmed"), ["/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"]);
});

test("with the confirmation asked for, a process that exits at once is told after TaskStart, with its status", async () => {
  const out = fifoReader(join(h.root, "quick2.stdout"));
  await task.create(createReq("quick2", ["sh", "-c", "echo hi; exit 5"], join(h.root, "quick2.stdout")), confirmed());
  assert.equal(await out, "hi\n");
  assert.equal((await task.wait({ id: "quick2", execId: "" }, h.md)).exitStatus, 5);
  assert.equal((await task.delete({ id: "quick2", execId: "" }, h.md)).exitStatus, 5);
  await until(() => h.topics("quick2").includes("/tasks/delete"), "delete event");
  assert.deepEqual(h.topics("quick2"), ["/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"]);
});

test("the confirmation without start-at-once changes nothing: Create only creates", async () => {
  const { pid } = await task.create(createReq("plain", ["sleep", "1000"]), {
    metadata: { ...h.md.metadata, [START_CONFIRMED_METADATA_KEY]: "1" },
  });
  assert.match(comm(pid), /^runc:\[2:INIT\]$/);
  assert.equal((await task.state({ id: "plain", execId: "" }, h.md)).status, Status.CREATED);
  await task.delete({ id: "plain", execId: "" }, h.md);
  assert.equal(alive(pid), false);
});
