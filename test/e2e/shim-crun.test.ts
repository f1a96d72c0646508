// crun through berth's shim: create options choose crun (containerd.runc.v1.Options
// binary_name), and the shim drives it over the same command line as runc (create/start/exec
// with --pid-file and --console-socket, kill --all, delete --force, state, ps, pause, update),
// reading crun's JSON log for its errors.
//
// This machine's cgroup layout is hybrid with a controller on the v2 hierarchy, which crun
// (1.8.1 in Debian 12) refuses whatever its flags; the probe (helpers/crun.ts) then runs crun
// through the wrapper the README documents, and skips, quoting crun, when nothing works. The
// refusal itself is tested too: through the shim it must come back as crun's own message and
// leave nothing behind.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";

import { Metrics } from "../../src/gen/cgroups/stats/v1/metrics.js";
import { Status } from "../../src/gen/containerd/types/task/task.js";
import { groupId, processStateDir } from "../../src/shim/paths.js";
import { FailedPreconditionError } from "../../src/util/errors.js";
import { PROCESS_SPEC_TYPE_URL, execProcess, makeBundle } from "../helpers/bundle.js";
import { probeCrun } from "../helpers/crun.js";
import { ShimHarness, alive, until, type TaskClient } from "../helpers/shim.js";

const probe = probeCrun();
if (probe.skip) console.log(`# skipping the crun shim tests: ${probe.skip}`);
else if (probe.refusal)
  console.log(`# plain crun refuses here ("${probe.refusal}"); running crun through the README's wrapper`);

let h: ShimHarness;
let task: TaskClient;
let address: string;
let crunRoot: string;

before(async () => {
  h = await ShimHarness.create();
  crunRoot = join(h.root, "crun-root");
  const first = join(h.root, "first");
  makeBundle(first, { args: ["true"] });
  address = h.start(first, "first");
  ({ task } = await h.connect(address));
});

after(async () => {
  const bin = probe.binary ?? "crun";
  const ids =
    spawnSync(bin, ["--root", crunRoot, "list", "-q"], { encoding: "utf8" }).stdout?.split("\n").filter(Boolean) ?? [];
  for (const id of ids) spawnSync(bin, ["--root", crunRoot, "delete", "--force", id]);
  await h.cleanup();
  probe.cleanup();
});

/** A busybox bundle whose cgroup is /berth-test/<name>-<pid> (helpers/bundle.ts). */
function bundle(name: string, args: string[], extra: { terminal?: boolean } = {}) {
  const dir = join(h.root, name);
  makeBundle(dir, { args, ...extra });
  return dir;
}

function createReq(id: string, dir: string, io: { stdout?: string; terminal?: boolean } = {}, binary = probe.binary) {
  return {
    id,
    bundle: dir,
    rootfs: [],
    terminal: io.terminal ?? false,
    stdin: "",
    stdout: io.stdout ?? "",
    stderr: io.stdout ?? "",
    checkpoint: "",
    parentCheckpoint: "",
    options: h.options(binary, crunRoot),
  };
}

const cgroupOf = (name: string, ctl = "memory") => `/sys/fs/cgroup/${ctl}/berth-test/${name}-${process.pid}`;
const crunKnows = (id: string) => existsSync(join(crunRoot, id));
const stateDirOf = (id: string, execId = "") =>
  processStateDir(h.socketDir, groupId(h.namespace, h.address), id, execId);

/** Nothing of a container is left: crun's state, its cgroup, its monitor, the shim's state dir. */
function assertGone(id: string, name: string) {
  assert.equal(crunKnows(id), false, `crun still has state for ${id}`);
  for (const ctl of ["memory", "pids", "cpu", "freezer"])
    assert.equal(existsSync(cgroupOf(name, ctl)), false, `cgroup ${cgroupOf(name, ctl)} left`);
  assert.equal(existsSync(stateDirOf(id)), false, "the shim's state dir for it is left");
  const monitors = h.ourProcesses().filter((p) => {
    try {
      return p.kind === "monitor" && readFileSync(`/proc/${p.pid}/cmdline`, "utf8").includes(stateDirOf(id));
    } catch {
      return false;
    }
  });
  assert.deepEqual(monitors, [], `a monitor of ${id} is left`);
}

describe("crun through berth's shim", { skip: probe.skip }, () => {
  test("a container under crun runs to completion with the right output and exit code", async () => {
    const dir = bundle("crun-run", ["sh", "-c", "echo hello from crun; exit 5"]);
    const out = join(h.root, "crun-run.out");
    const { pid } = await task.create(createReq("crun-run", dir, { stdout: `file://${out}` }), h.md);
    assert.ok(pid > 0);
    assert.ok(crunKnows("crun-run"));
    assert.equal((await task.state({ id: "crun-run", execId: "" }, h.md)).status, Status.CREATED);
    await task.start({ id: "crun-run", execId: "" }, h.md);
    assert.equal((await task.wait({ id: "crun-run", execId: "" }, h.md)).exitStatus, 5);
    assert.equal(readFileSync(out, "utf8"), "hello from crun\n");
    const d = await task.delete({ id: "crun-run", execId: "" }, h.md);
    assert.equal(d.exitStatus, 5);
    assert.equal(d.pid, pid);
    await until(() => h.topics("crun-run").includes("/tasks/delete"), "delete event");
    assert.deepEqual(h.topics("crun-run"), ["/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"]);
    assertGone("crun-run", "crun-run");
  });

  test("exec, pids, pause/resume, stats and update of a crun container; kill --all ends it with 137", async () => {
    const dir = bundle("crun-long", ["sleep", "1000"]);
    const { pid } = await task.create(createReq("crun-long", dir), h.md);
    await task.start({ id: "crun-long", execId: "" }, h.md);
    // crun put it in the spec's cgroup
    assert.match(
      readFileSync(`/proc/${pid}/cgroup`, "utf8"),
      new RegExp(`:memory:/berth-test/crun-long-${process.pid}$`, "m"),
    );

    const execOut = join(h.root, "crun-exec.out");
    const exec = (execId: string, args: string[]) =>
      task.exec(
        {
          id: "crun-long",
          execId,
          terminal: false,
          stdin: "",
          stdout: `file://${execOut}`,
          stderr: `file://${execOut}`,
          spec: { typeUrl: PROCESS_SPEC_TYPE_URL, value: execProcess(args) },
        },
        h.md,
      );
    await exec("e1", ["sh", "-c", "echo in-exec; echo to-stderr >&2; exit 7"]);
    const e1 = await task.start({ id: "crun-long", execId: "e1" }, h.md);
    assert.ok(e1.pid > 0 && e1.pid !== pid);
    assert.equal((await task.wait({ id: "crun-long", execId: "e1" }, h.md)).exitStatus, 7);
    assert.equal(readFileSync(execOut, "utf8"), "in-exec\nto-stderr\n");
    assert.equal((await task.delete({ id: "crun-long", execId: "e1" }, h.md)).exitStatus, 7);

    // a running exec is listed by `crun ps` beside the init, and a kill of it ends it alone
    await exec("e2", ["sleep", "500"]);
    const e2 = await task.start({ id: "crun-long", execId: "e2" }, h.md);
    const pids = (await task.pids({ id: "crun-long" }, h.md)).processes.map((p) => p.pid).sort();
    assert.deepEqual(
      pids,
      [pid, e2.pid].sort((a, b) => a - b),
    );
    await task.kill({ id: "crun-long", execId: "e2", signal: 9, all: false }, h.md);
    assert.equal((await task.wait({ id: "crun-long", execId: "e2" }, h.md)).exitStatus, 137);
    await task.delete({ id: "crun-long", execId: "e2" }, h.md);
    assert.ok(alive(pid));

    await task.pause({ id: "crun-long" }, h.md);
    assert.equal((await task.state({ id: "crun-long", execId: "" }, h.md)).status, Status.PAUSED);
    assert.equal(readFileSync(join(cgroupOf("crun-long", "freezer"), "freezer.state"), "utf8").trim(), "FROZEN");
    await task.resume({ id: "crun-long" }, h.md);
    assert.equal((await task.state({ id: "crun-long", execId: "" }, h.md)).status, Status.RUNNING);

    const m = Metrics.decode((await task.stats({ id: "crun-long" }, h.md)).stats!.value);
    assert.ok(m.memory!.usage!.usage > 0n, "memory usage");
    assert.equal(m.pids!.current, 1n);
    await task.update(
      {
        id: "crun-long",
        resources: { typeUrl: "", value: Buffer.from(JSON.stringify({ pids: { limit: 64 } })) },
        annotations: {},
      },
      h.md,
    );
    assert.equal(Metrics.decode((await task.stats({ id: "crun-long" }, h.md)).stats!.value).pids!.limit, 64n);

    await task.kill({ id: "crun-long", execId: "", signal: 9, all: true }, h.md);
    assert.equal((await task.wait({ id: "crun-long", execId: "" }, h.md)).exitStatus, 137);
    await assert.rejects(task.kill({ id: "crun-long", execId: "", signal: 9, all: false }, h.md), /already finished/);
    // a stopped crun container has no processes (crun 1.8's own `ps` crashes there)
    assert.deepEqual((await task.pids({ id: "crun-long" }, h.md)).processes, []);
    await task.delete({ id: "crun-long", execId: "" }, h.md);
    assertGone("crun-long", "crun-long");
  });

  test("a crun container with a terminal gets its pty through the console socket", async () => {
    const dir = bundle("crun-tty", ["sh", "-c", "sleep 0.5; stty size; tty"], { terminal: true });
    const out = join(h.root, "crun-tty.out");
    await task.create(createReq("crun-tty", dir, { stdout: `file://${out}`, terminal: true }), h.md);
    await task.resizePty({ id: "crun-tty", execId: "", width: 100, height: 40 }, h.md);
    await task.start({ id: "crun-tty", execId: "" }, h.md);
    assert.equal((await task.wait({ id: "crun-tty", execId: "" }, h.md)).exitStatus, 0);
    assert.equal(readFileSync(out, "utf8").replace(/\r/g, ""), "40 100\n/dev/pts/0\n");
    await task.delete({ id: "crun-tty", execId: "" }, h.md);
    assertGone("crun-tty", "crun-tty");
  });

  test("a crun container created but never started is deleted cleanly", async () => {
    const dir = bundle("crun-unstarted", ["echo", "never"]);
    const { pid } = await task.create(createReq("crun-unstarted", dir), h.md);
    assert.ok(alive(pid));
    await task.delete({ id: "crun-unstarted", execId: "" }, h.md);
    await until(() => !alive(pid), "the created process to go");
    assertGone("crun-unstarted", "crun-unstarted");
  });

  const noCheckpoint = /unknown command/.test(spawnSync("crun", ["checkpoint", "--help"], { encoding: "utf8" }).stderr);
  test(
    "checkpoint with a crun built without CRIU fails clearly and the container runs on",
    { skip: !noCheckpoint && "this crun has checkpoint" },
    async () => {
      const dir = bundle("crun-ckpt", ["sleep", "1000"]);
      const { pid } = await task.create(createReq("crun-ckpt", dir), h.md);
      await task.start({ id: "crun-ckpt", execId: "" }, h.md);
      await assert.rejects(
        task.checkpoint({ id: "crun-ckpt", path: join(h.root, "ckpt"), options: undefined }, h.md),
        (e: Error) => e instanceof FailedPreconditionError && /without CRIU support/.test(e.message),
      );
      assert.ok(alive(pid));
      assert.equal((await task.state({ id: "crun-ckpt", execId: "" }, h.md)).status, Status.RUNNING);
      await task.kill({ id: "crun-ckpt", execId: "", signal: 9, all: false }, h.md);
      await task.wait({ id: "crun-ckpt", execId: "" }, h.md);
      await task.delete({ id: "crun-ckpt", execId: "" }, h.md);
      assertGone("crun-ckpt", "crun-ckpt");
    },
  );
});

test(
  "crun's refusal of this machine's cgroup layout comes back as crun's own message and leaves nothing behind",
  { skip: !probe.refusal && "plain crun runs containers here: there is no refusal to see" },
  async () => {
    const dir = bundle("crun-refused", ["true"]);
    await assert.rejects(task.create(createReq("crun-refused", dir, {}, "crun"), h.md), (e: Error) => {
      assert.ok(e instanceof FailedPreconditionError, `${e.constructor.name}: ${e.message}`);
      assert.ok(e.message.startsWith(`crun create: ${probe.refusal}`), e.message);
      return true;
    });
    await assert.rejects(task.state({ id: "crun-refused", execId: "" }, h.md), /not found/);
    assertGone("crun-refused", "crun-refused");
    // the shim serves on: the next container (runc) is unaffected
    const ok = bundle("after-refusal", ["sh", "-c", "exit 4"]);
    await task.create({ ...createReq("after-refusal", ok), options: h.options("runc") }, h.md);
    await task.start({ id: "after-refusal", execId: "" }, h.md);
    assert.equal((await task.wait({ id: "after-refusal", execId: "" }, h.md)).exitStatus, 4);
    await task.delete({ id: "after-refusal", execId: "" }, h.md);
    const left = existsSync(crunRoot)
      ? readdirSync(crunRoot, { withFileTypes: true }).filter((d) => d.isDirectory())
      : [];
    assert.deepEqual(
      left.map((d) => d.name),
      [],
    );
  },
);
