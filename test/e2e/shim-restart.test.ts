// Failure isolation: what the death of a shim client (berthd) or of the shim itself does
// to the containers it serves. Containers keep running under their monitors, with their
// stdio intact, and a new client or a restarted shim sees the true states and the exit
// statuses of processes that ended while nobody was watching.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { join } from "node:path";

import { Status } from "../../src/gen/containerd/types/task/task.js";
import { PROCESS_SPEC_TYPE_URL, execProcess, makeBundle } from "../helpers/bundle.js";
import { REPO, ShimHarness, alive, until } from "../helpers/shim.js";

let h: ShimHarness;

before(async () => {
  h = await ShimHarness.create();
});

after(async () => {
  await h.cleanup();
});

function createReq(id: string, dir: string, stdout = "") {
  return {
    id,
    bundle: dir,
    rootfs: [],
    terminal: false,
    stdin: "",
    stdout,
    stderr: stdout,
    checkpoint: "",
    parentCheckpoint: "",
    options: h.options(),
  };
}

test("kill -9 of the shim: containers keep running with their stdio; a restarted shim re-adopts them with true states and exit codes", async () => {
  const a = join(h.root, "a");
  const b = join(h.root, "b");
  makeBundle(a, { args: ["sh", "-c", "echo one; sleep 3; echo two; sleep 1000"] });
  makeBundle(b, { args: ["sh", "-c", "sleep 2; echo b-done; exit 4"] });
  const address = h.start(a, "a");
  assert.equal(h.start(b, "b"), address);
  const { task, conn } = await h.connect(address);
  const aOut = join(h.root, "a.out");
  const bOut = join(h.root, "b.out");
  const aPid = (await task.create(createReq("a", a, `file://${aOut}`), h.md)).pid;
  await task.start({ id: "a", execId: "" }, h.md);
  await task.create(createReq("b", b, `file://${bOut}`), h.md);
  await task.start({ id: "b", execId: "" }, h.md);
  await task.exec(
    {
      id: "a",
      execId: "slow-exec",
      terminal: false,
      stdin: "",
      stdout: "",
      stderr: "",
      spec: { typeUrl: PROCESS_SPEC_TYPE_URL, value: execProcess(["sh", "-c", "sleep 2; exit 6"]) },
    },
    h.md,
  );
  await task.start({ id: "a", execId: "slow-exec" }, h.md);
  const { shimPid } = await task.connect({ id: "a" }, h.md);

  process.kill(shimPid, "SIGKILL");
  await until(() => !alive(shimPid), "the shim to die");
  conn.close();

  // the containers do not notice: output keeps flowing, b exits on its own
  await until(() => readFileSync(aOut, "utf8") === "one\ntwo\n", "a's output after the shim died");
  await until(() => readFileSync(bOut, "utf8") === "b-done\n", "b's output");
  assert.ok(alive(aPid), "a still runs");
  await until(
    () => h.ourProcesses().filter((p) => p.kind === "monitor").length === 1,
    "b's and the exec's monitors to finish, a's to stay",
  );

  // containerd or berthd runs `start` again: a new shim re-adopts everything
  const eventsBefore = h.events.length;
  assert.equal(h.start(a, "a"), address);
  const again = await h.connect(address);
  const newShim = (await again.task.connect({ id: "a" }, h.md)).shimPid;
  assert.notEqual(newShim, shimPid);
  const sa = await again.task.state({ id: "a", execId: "" }, h.md);
  assert.equal(sa.status, Status.RUNNING);
  assert.equal(sa.pid, aPid);
  const sb = await again.task.state({ id: "b", execId: "" }, h.md);
  assert.equal(sb.status, Status.STOPPED);
  assert.equal(sb.exitStatus, 4);
  assert.equal((await again.task.wait({ id: "b", execId: "" }, h.md)).exitStatus, 4);
  assert.equal((await again.task.wait({ id: "a", execId: "slow-exec" }, h.md)).exitStatus, 6);
  // exits nobody heard of are published by the new shim
  await until(
    () => h.events.slice(eventsBefore).filter((e) => e.topic === "/tasks/exit").length === 2,
    "exit events for b and the exec",
  );

  // and it controls the adopted container as before
  await again.task.pause({ id: "a" }, h.md);
  assert.equal((await again.task.state({ id: "a", execId: "" }, h.md)).status, Status.PAUSED);
  await again.task.resume({ id: "a" }, h.md);
  await again.task.kill({ id: "a", execId: "", signal: 9, all: false }, h.md);
  assert.equal((await again.task.wait({ id: "a", execId: "" }, h.md)).exitStatus, 137);
  await again.task.delete({ id: "a", execId: "slow-exec" }, h.md);
  for (const id of ["a", "b"]) await again.task.delete({ id, execId: "" }, h.md);
  await again.task.shutdown({ id: "a", now: false }, h.md);
  await until(() => !alive(newShim), "the new shim to exit");
});

test("kill -9 of the client (berthd) leaves containers running; a new client sees their states and exit codes", async () => {
  const c = join(h.root, "c");
  const d = join(h.root, "d");
  makeBundle(c, { args: ["sleep", "1000"] });
  makeBundle(d, { args: ["sh", "-c", "sleep 1; exit 5"] });
  const address = h.start(c, "c");
  // a separate process plays berthd: it creates and starts both, then is killed
  const script = `
    const { TtrpcClient, createClient } = await import(${JSON.stringify(join(REPO, "dist/src/ttrpc/index.js"))});
    const { TaskDefinition } = await import(${JSON.stringify(join(REPO, "dist/src/gen/containerd/runtime/v2/task/shim.js"))});
    const reqs = JSON.parse(process.argv[1]);
    const task = createClient(TaskDefinition, await TtrpcClient.connect(${JSON.stringify(address)}));
    const md = { metadata: { "containerd-namespace-ttrpc": ${JSON.stringify(h.namespace)} } };
    for (const r of reqs) {
      r.options.value = Buffer.from(r.options.value, "base64");
      await task.create(r, md);
      await task.start({ id: r.id, execId: "" }, md);
    }
    // a wait in flight when it dies
    task.wait({ id: "c", execId: "" }, md);
    console.log("ready");
    setInterval(() => {}, 1000);
  `;
  const reqs = [createReq("c", c), createReq("d", d)].map((r) => ({
    ...r,
    options: { ...r.options, value: Buffer.from(r.options!.value).toString("base64") },
  }));
  const berthd = spawn(process.execPath, ["--input-type=module", "-e", script, JSON.stringify(reqs)], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  let out = "";
  berthd.stdout.on("data", (x: Buffer) => (out += x.toString()));
  await until(() => out.includes("ready"), "the client to start both containers");
  berthd.kill("SIGKILL");
  await once(berthd, "exit");

  const { task } = await h.connect(address);
  assert.equal((await task.state({ id: "c", execId: "" }, h.md)).status, Status.RUNNING);
  assert.equal((await task.wait({ id: "d", execId: "" }, h.md)).exitStatus, 5);
  assert.equal((await task.state({ id: "d", execId: "" }, h.md)).exitStatus, 5);
  await task.kill({ id: "c", execId: "", signal: 9, all: false }, h.md);
  assert.equal((await task.wait({ id: "c", execId: "" }, h.md)).exitStatus, 137);
  for (const id of ["c", "d"]) await task.delete({ id, execId: "" }, h.md);
  const { shimPid } = await task.connect({ id: "" }, h.md);
  await task.shutdown({ id: "", now: false }, h.md);
  await until(() => !alive(shimPid), "the shim to exit");
});

test("a shim whose monitor is killed reports the lost process as exited (255) instead of hanging", async () => {
  const e = join(h.root, "e");
  makeBundle(e, { args: ["sleep", "1000"] });
  const address = h.start(e, "e");
  const { task } = await h.connect(address);
  const pid = (await task.create(createReq("e", e), h.md)).pid;
  await task.start({ id: "e", execId: "" }, h.md);
  const monitor = h.ourProcesses().find((p) => p.kind === "monitor")!;
  process.kill(monitor.pid, "SIGKILL");
  // the container lives on, now the shim's (a subreaper) child; end it, the shim reaps it
  await until(() => !alive(monitor.pid), "the monitor to die");
  process.kill(pid, "SIGKILL");
  const w = await task.wait({ id: "e", execId: "" }, h.md);
  assert.equal(w.exitStatus, 255);
  await until(() => !alive(pid), "no zombie left");
  await task.delete({ id: "e", execId: "" }, h.md);
  const { shimPid } = await task.connect({ id: "" }, h.md);
  await task.shutdown({ id: "", now: false }, h.md);
  await until(() => !alive(shimPid), "the shim to exit");
});
