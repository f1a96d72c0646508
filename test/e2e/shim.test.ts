// berth's shim driven over ttrpc as containerd and berthd drive it: real shim binary,
// real monitors, real runc, busybox containers.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";

import { Metrics } from "../../src/gen/cgroups/stats/v1/metrics.js";
import { DeleteResponse } from "../../src/gen/containerd/runtime/v2/task/shim.js";
import { Status } from "../../src/gen/containerd/types/task/task.js";
import { PROCESS_SPEC_TYPE_URL, execProcess, makeBundle } from "../helpers/bundle.js";
import { ShimHarness, alive, fifoReader, until, type TaskClient } from "../helpers/shim.js";

let h: ShimHarness;
let task: TaskClient;
let address: string;

before(async () => {
  h = await ShimHarness.create();
  const b = join(h.root, "first");
  makeBundle(b, { args: ["true"] });
  address = h.start(b, "first");
  ({ task } = await h.connect(address));
});

after(async () => {
  await h.cleanup();
});

function bundle(
  name: string,
  args: string[],
  extra: Parameters<typeof makeBundle>[1] extends infer O ? Partial<O> : never = {},
) {
  const dir = join(h.root, name);
  makeBundle(dir, { args, ...extra });
  return dir;
}

function createReq(
  id: string,
  dir: string,
  io: { stdin?: string; stdout?: string; stderr?: string; terminal?: boolean } = {},
) {
  return {
    id,
    bundle: dir,
    rootfs: [],
    terminal: io.terminal ?? false,
    stdin: io.stdin ?? "",
    stdout: io.stdout ?? "",
    stderr: io.stderr ?? "",
    checkpoint: "",
    parentCheckpoint: "",
    options: h.options(),
  };
}

test("start prints a unix:// address of a 0600 socket in a 0700 dir and writes the bundle's address file", () => {
  assert.match(address, /^unix:\/\/\//);
  const path = address.slice("unix://".length);
  assert.equal(statSync(path).mode & 0o777, 0o600);
  assert.equal(statSync(h.socketDir).mode & 0o777, 0o700);
  assert.equal(readFileSync(join(h.root, "first", "address"), "utf8"), address);
});

test("a container prints to a stdout fifo and exits 3; wait, state and delete report it; events in order", async () => {
  const dir = bundle("exit3", ["sh", "-c", "echo hello; echo oops >&2; exit 3"]);
  const out = fifoReader(join(h.root, "exit3.stdout"));
  const req = createReq("exit3", dir, {
    stdout: join(h.root, "exit3.stdout"),
    stderr: `file://${h.root}/exit3.stderr`,
  });
  const { pid } = await task.create(req, h.md);
  assert.ok(pid > 0);
  assert.equal((await task.state({ id: "exit3", execId: "" }, h.md)).status, Status.CREATED);
  assert.equal((await task.start({ id: "exit3", execId: "" }, h.md)).pid, pid);
  const w = await task.wait({ id: "exit3", execId: "" }, h.md);
  assert.equal(w.exitStatus, 3);
  assert.ok(w.exitedAt && w.exitedAt.seconds > 0n);
  assert.equal(await out, "hello\n");
  assert.equal(readFileSync(join(h.root, "exit3.stderr"), "utf8"), "oops\n");
  const st = await task.state({ id: "exit3", execId: "" }, h.md);
  assert.equal(st.status, Status.STOPPED);
  assert.equal(st.exitStatus, 3);
  // wait after the exit answers at once with the same status
  assert.equal((await task.wait({ id: "exit3", execId: "" }, h.md)).exitStatus, 3);
  const d = await task.delete({ id: "exit3", execId: "" }, h.md);
  assert.equal(d.exitStatus, 3);
  assert.equal(d.pid, pid);
  await assert.rejects(task.state({ id: "exit3", execId: "" }, h.md), /not found/);
  await until(() => h.topics("exit3").includes("/tasks/delete"), "delete event");
  assert.deepEqual(h.topics("exit3"), ["/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"]);
  assert.ok(h.events.every((e) => e.namespace === h.namespace));
});

test("exec runs with its own output and exit code; pids, pause/resume, stats, SIGKILL -> 137", async () => {
  const dir = bundle("long", ["sleep", "1000"]);
  const { pid } = await task.create(createReq("long", dir), h.md);
  await task.start({ id: "long", execId: "" }, h.md);

  const execOut = join(h.root, "exec1.out");
  await task.exec(
    {
      id: "long",
      execId: "e1",
      terminal: false,
      stdin: "",
      stdout: `file://${execOut}`,
      stderr: `file://${execOut}`,
      spec: { typeUrl: PROCESS_SPEC_TYPE_URL, value: execProcess(["sh", "-c", "echo in-exec; exit 7"]) },
    },
    h.md,
  );
  assert.equal((await task.state({ id: "long", execId: "e1" }, h.md)).status, Status.CREATED);
  const ep = await task.start({ id: "long", execId: "e1" }, h.md);
  assert.ok(ep.pid > 0 && ep.pid !== pid);
  assert.equal((await task.wait({ id: "long", execId: "e1" }, h.md)).exitStatus, 7);
  assert.equal(readFileSync(execOut, "utf8"), "in-exec\n");
  assert.equal((await task.delete({ id: "long", execId: "e1" }, h.md)).exitStatus, 7);

  const pids = await task.pids({ id: "long" }, h.md);
  assert.deepEqual(
    pids.processes.map((p) => p.pid),
    [pid],
  );

  await task.pause({ id: "long" }, h.md);
  assert.equal((await task.state({ id: "long", execId: "" }, h.md)).status, Status.PAUSED);
  assert.match(readFileSync(`/proc/${pid}/status`, "utf8"), /State:\s+[DS]/);
  await task.resume({ id: "long" }, h.md);
  assert.equal((await task.state({ id: "long", execId: "" }, h.md)).status, Status.RUNNING);

  const stats = await task.stats({ id: "long" }, h.md);
  assert.equal(stats.stats?.typeUrl, "io.containerd.cgroups.v1.Metrics");
  const m = Metrics.decode(stats.stats!.value);
  assert.ok(m.memory!.usage!.usage > 0n, "memory usage");
  assert.equal(m.pids!.current, 1n);

  await task.update(
    {
      id: "long",
      resources: { typeUrl: "", value: Buffer.from(JSON.stringify({ pids: { limit: 64 } })) },
      annotations: {},
    },
    h.md,
  );
  assert.equal(Metrics.decode((await task.stats({ id: "long" }, h.md)).stats!.value).pids!.limit, 64n);

  await task.kill({ id: "long", execId: "", signal: 9, all: false }, h.md);
  assert.equal((await task.wait({ id: "long", execId: "" }, h.md)).exitStatus, 137);
  await assert.rejects(task.kill({ id: "long", execId: "", signal: 9, all: false }, h.md), /already finished/);
  await task.delete({ id: "long", execId: "" }, h.md);
  await until(() => h.topics("long").includes("/tasks/delete"), "delete event");
  assert.deepEqual(h.topics("long"), [
    "/tasks/create",
    "/tasks/start",
    "/tasks/exec-added",
    "/tasks/exec-started",
    "/tasks/exit",
    "/tasks/paused",
    "/tasks/resumed",
    "/tasks/exit",
    "/tasks/delete",
  ]);
});

test("an exec waited on before its Start (as berthd and containerd do) and deleted: its dir goes, its id is free again", async () => {
  const dir = bundle("execwait", ["sleep", "1000"]);
  await task.create(createReq("execwait", dir), h.md);
  await task.start({ id: "execwait", execId: "" }, h.md);
  const procDirs = () =>
    readdirSync(h.socketDir, { withFileTypes: true })
      .filter((d) => d.isDirectory())
      .flatMap((d) =>
        existsSync(join(h.socketDir, d.name, "p"))
          ? readdirSync(join(h.socketDir, d.name, "p")).map((k) => join(h.socketDir, d.name, "p", k))
          : [],
      );
  const before = new Set(procDirs());
  for (const status of [3, 4]) {
    const spec = { typeUrl: PROCESS_SPEC_TYPE_URL, value: execProcess(["sh", "-c", `exit ${status}`]) };
    await task.exec({ id: "execwait", execId: "ew", terminal: false, stdin: "", stdout: "", stderr: "", spec }, h.md);
    const execDir = procDirs().find((d) => !before.has(d));
    assert.ok(execDir, "the exec has a state dir");
    const waited = task.wait({ id: "execwait", execId: "ew" }, h.md);
    await task.start({ id: "execwait", execId: "ew" }, h.md);
    assert.equal((await waited).exitStatus, status);
    assert.equal((await task.delete({ id: "execwait", execId: "ew" }, h.md)).exitStatus, status);
    await assert.rejects(task.state({ id: "execwait", execId: "ew" }, h.md), /not found/);
    await until(() => !existsSync(execDir), "the deleted exec's state dir to go");
  }
  await task.kill({ id: "execwait", execId: "", signal: 9, all: false }, h.md);
  await task.wait({ id: "execwait", execId: "" }, h.md);
  await task.delete({ id: "execwait", execId: "" }, h.md);
});

test("stdin from a fifo reaches the process; closing it ends cat", async () => {
  const dir = bundle("cat", ["cat"]);
  const stdin = join(h.root, "cat.stdin");
  execFileSync("mkfifo", [stdin]);
  const out = join(h.root, "cat.out");
  await task.create(createReq("cat", dir, { stdin, stdout: `file://${out}` }), h.md);
  await task.start({ id: "cat", execId: "" }, h.md);
  // a writer like containerd's: write, then close
  writeFileSync(stdin, "through stdin\n");
  await task.closeIO({ id: "cat", execId: "", stdin: true }, h.md);
  assert.equal((await task.wait({ id: "cat", execId: "" }, h.md)).exitStatus, 0);
  assert.equal(readFileSync(out, "utf8"), "through stdin\n");
  await task.delete({ id: "cat", execId: "" }, h.md);
});

test("a terminal container gets a pty through the console socket and can be resized", async () => {
  const dir = bundle("tty", ["sh", "-c", "sleep 0.5; stty size; tty"], { terminal: true });
  const out = join(h.root, "tty.out");
  await task.create(createReq("tty", dir, { stdout: `file://${out}`, terminal: true }), h.md);
  await task.resizePty({ id: "tty", execId: "", width: 100, height: 40 }, h.md);
  await task.start({ id: "tty", execId: "" }, h.md);
  assert.equal((await task.wait({ id: "tty", execId: "" }, h.md)).exitStatus, 0);
  assert.equal(readFileSync(out, "utf8").replace(/\r/g, ""), "40 100\n/dev/pts/0\n");
  await task.delete({ id: "tty", execId: "" }, h.md);
});

test("Create mounts the rootfs mounts it is given on <bundle>/rootfs and Delete unmounts them", async () => {
  const dir = join(h.root, "mounted");
  const src = join(h.root, "mounted-src");
  makeBundle(dir, { args: ["sh", "-c", "cat /marker"], rootfsDir: src });
  writeFileSync(join(src, "marker"), "from the bind mount\n");
  const out = join(h.root, "mounted.out");
  const req = {
    ...createReq("mounted", dir, { stdout: `file://${out}` }),
    rootfs: [{ type: "bind", source: src, target: "", options: ["rbind", "rw"] }],
  };
  await task.create(req, h.md);
  assert.ok(readFileSync("/proc/self/mountinfo", "utf8").includes(join(dir, "rootfs")));
  await task.start({ id: "mounted", execId: "" }, h.md);
  assert.equal((await task.wait({ id: "mounted", execId: "" }, h.md)).exitStatus, 0);
  assert.equal(readFileSync(out, "utf8"), "from the bind mount\n");
  await task.delete({ id: "mounted", execId: "" }, h.md);
  assert.ok(!readFileSync("/proc/self/mountinfo", "utf8").includes(join(dir, "rootfs")));
});

test("a failing create reports the runtime's error and leaves nothing behind", async () => {
  const dir = bundle("badcmd", ["/no/such/binary"]);
  await assert.rejects(task.create(createReq("badcmd", dir), h.md), /no such file or directory/);
  await assert.rejects(task.state({ id: "badcmd", execId: "" }, h.md), /not found/);
  assert.ok(!h.ourProcesses().some((p) => p.kind === "monitor"), "no monitor left");

  const dir2 = bundle("badspec", ["true"]);
  const spec = JSON.parse(readFileSync(join(dir2, "config.json"), "utf8")) as { root: { path: string } };
  spec.root.path = "/no/such/rootfs";
  writeFileSync(join(dir2, "config.json"), JSON.stringify(spec));
  await assert.rejects(task.create(createReq("badspec", dir2), h.md), (err: Error) => err.message.length > 0);
  await assert.rejects(task.state({ id: "badspec", execId: "" }, h.md), /not found/);
});

test("two containers of one pod (same sandbox-id) and another pod share one shim process", async () => {
  const ann = { "io.kubernetes.cri.sandbox-id": "pod-a" };
  const a1 = bundle("pod-a-1", ["sleep", "1000"], { annotations: ann });
  const a2 = bundle("pod-a-2", ["sleep", "1000"], { annotations: ann });
  const b1 = bundle("pod-b-1", ["sleep", "1000"], { annotations: { "io.kubernetes.cri.sandbox-id": "pod-b" } });
  const addrs = [h.start(a1, "pod-a-1"), h.start(a2, "pod-a-2"), h.start(b1, "pod-b-1")];
  assert.deepEqual(new Set(addrs), new Set([address]));
  for (const [id, dir] of [
    ["pod-a-1", a1],
    ["pod-a-2", a2],
    ["pod-b-1", b1],
  ] as const) {
    await task.create(createReq(id, dir), h.md);
    await task.start({ id, execId: "" }, h.md);
  }
  const shims = new Set<number>();
  for (const id of ["pod-a-1", "pod-a-2", "pod-b-1"]) shims.add((await task.connect({ id }, h.md)).shimPid);
  assert.equal(shims.size, 1);
  assert.deepEqual(
    h
      .ourProcesses()
      .filter((p) => p.kind === "shim")
      .map((p) => p.pid),
    [...shims],
  );
  // Shutdown while tasks remain does not end the shim
  await task.shutdown({ id: "pod-a-1", now: false }, h.md);
  for (const id of ["pod-a-1", "pod-a-2", "pod-b-1"]) {
    await task.kill({ id, execId: "", signal: 9, all: true }, h.md);
    assert.equal((await task.wait({ id, execId: "" }, h.md)).exitStatus, 137);
    await task.delete({ id, execId: "" }, h.md);
  }
  assert.ok(alive([...shims][0]!));
});

test("the delete command force-cleans a task and prints a DeleteResponse", async () => {
  const dir = bundle("forgotten", ["sleep", "1000"]);
  h.start(dir, "forgotten");
  await task.create(createReq("forgotten", dir), h.md);
  await task.start({ id: "forgotten", execId: "" }, h.md);
  const d = DeleteResponse.decode(h.deleteCmd(dir, "forgotten"));
  assert.equal(d.exitStatus, 137);
  assert.ok(d.exitedAt);
  assert.throws(() => execFileSync("runc", ["--root", h.runcRoot, "state", "forgotten"], { stdio: "pipe" }));
  // the shim hears the exit from the monitor and can still be asked to delete
  assert.equal((await task.wait({ id: "forgotten", execId: "" }, h.md)).exitStatus, 137);
  await task.delete({ id: "forgotten", execId: "" }, h.md);
});

test("Checkpoint with CRIU, or a clear FailedPrecondition", async (t) => {
  const dir = bundle("ckpt", ["sleep", "1000"], { hostNetwork: true });
  await task.create(createReq("ckpt", dir), h.md);
  await task.start({ id: "ckpt", execId: "" }, h.md);
  const image = join(h.root, "ckpt-image");
  mkdirSync(image);
  try {
    await task.checkpoint({ id: "ckpt", path: image, options: undefined }, h.md);
    assert.ok(statSync(join(image, "inventory.img")).isFile());
    assert.equal((await task.state({ id: "ckpt", execId: "" }, h.md)).status, Status.RUNNING);
  } catch (err) {
    // CRIU is installed but may not work in this kernel/VM: the error must say so clearly
    t.diagnostic(`checkpoint failed: ${(err as Error).message}`);
    assert.match((err as Error).message, /checkpoint|criu/i);
  }
  await task.kill({ id: "ckpt", execId: "", signal: 9, all: false }, h.md);
  await task.wait({ id: "ckpt", execId: "" }, h.md);
  await task.delete({ id: "ckpt", execId: "" }, h.md);
});

test("Shutdown with no tasks left ends the shim and removes its socket", async () => {
  const shimPid = (await task.connect({ id: "" }, h.md)).shimPid;
  await task.shutdown({ id: "", now: false }, h.md);
  await until(() => !alive(shimPid), "shim exit");
  assert.throws(() => statSync(address.slice("unix://".length)));
  assert.equal(h.ourProcesses().length, 0, "no monitors left behind");
});
