// The runtime manager (src/runtime) against real shims: containerd's own
// containerd-shim-runc-v2 of both generations (Debian's containerd 1.6, and containerd 2.4's,
// built from the module proxy: bootstrap protocol on start, task API v3) and berth's shim,
// with real runc and a busybox bundle. Every test cleans up its shims, containers, mounts and
// files.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";

import { TaskExit } from "../../src/gen/containerd/events/task.js";
import { BootstrapParams, BootstrapResult, LogLevel } from "../../src/gen/containerd/runtime/bootstrap/v1/bootstrap.js";
import type { Mount } from "../../src/gen/containerd/types/mount.js";
import {
  BERTH_RUNTIME_TYPE,
  EVENTS_SOCKET_NAME,
  FileShimRecordStore,
  RUNC_RUNTIME_TYPE,
  RuntimeClasses,
  SANDBOX_ID_ANNOTATION,
  ShimManager,
  bootstrapFromVersionOutput,
  decodeEnvelope,
  encodeBootstrapParams,
  makeRuntimeHandler,
  runcOptionsAny,
  parseStartOutput,
  repoBinDir,
  resolveShimBinary,
  shimBinaryName,
  type CreateTaskOptions,
  type CreatedTask,
  type RuntimeEvent,
  type TaskExitEvent,
} from "../../src/runtime/index.js";
import { InvalidArgumentError, NotFoundError } from "../../src/util/errors.js";
import { createLogger, silentLogger } from "../../src/util/log.js";
import { makeBundle } from "../helpers/bundle.js";
import { goTool } from "../helpers/go-tools.js";

/** BERTH_TEST_LOG=debug shows the manager's and the shims' logs. */
const logger = process.env.BERTH_TEST_LOG ? createLogger({ level: "debug", format: "text" }) : silentLogger();

const NS = "berth-test";

type ShimKind = "runc" | "runc-2.4" | "berth";

/** The runtime type of each kind's handler; containerd 2.4's shim by its absolute path. */
function runtimeTypeOf(kind: ShimKind): string {
  if (kind === "berth") return BERTH_RUNTIME_TYPE;
  return kind === "runc" ? RUNC_RUNTIME_TYPE : goTool("containerd-2.4", "containerd-shim-runc-v2");
}
const REPO = new URL("../../..", import.meta.url).pathname.replace(/\/$/, "");
const BERTH_SHIM = join(REPO, "bin/containerd-shim-berth-v2");

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function until<T>(fn: () => T | Promise<T>, what: string, timeoutMs = 20_000): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** Alive and not a zombie (pid 1 of this machine reaps orphans lazily). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return !stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z");
  } catch {
    return false;
  }
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  return Promise.race([p, sleep(ms).then(() => undefined)]);
}

/** One test's world: a private root with the manager's state, records, runc root and bundles. */
class Env {
  readonly stateDir: string;
  readonly recordsDir: string;
  readonly runcRoot: string;
  readonly shimSocketDir: string;
  /** Stands in for berthd's socket: shims are grouped by it, and it names this test's shims. */
  readonly address: string;
  readonly events: RuntimeEvent[] = [];
  readonly readers: ChildProcess[] = [];
  /** Shim addresses seen, to check their sockets are gone at the end. */
  readonly addresses = new Set<string>();
  private cleaned = false;
  manager!: ShimManager;
  readonly records: FileShimRecordStore;
  readonly handlers: RuntimeClasses;

  private constructor(
    readonly root: string,
    readonly kind: ShimKind,
  ) {
    this.stateDir = join(root, "state");
    this.recordsDir = join(root, "records");
    this.runcRoot = join(root, "runc");
    this.shimSocketDir = join(root, "berth-shim");
    this.address = join(root, "berthd.sock");
    this.records = new FileShimRecordStore(this.recordsDir);
    this.handlers = new RuntimeClasses(
      {
        runc: { runtimeType: RUNC_RUNTIME_TYPE, binaryName: "runc", root: this.runcRoot },
        berth: { runtimeType: BERTH_RUNTIME_TYPE, binaryName: "runc", root: this.runcRoot },
        [kind]: { runtimeType: runtimeTypeOf(kind), binaryName: "runc", root: this.runcRoot },
      },
      kind,
    );
  }

  static async create(kind: ShimKind = "runc"): Promise<Env> {
    const env = new Env(mkdtempSync("/tmp/berth-rt-"), kind);
    live.add(env);
    env.manager = await env.newManager();
    return env;
  }

  async newManager(): Promise<ShimManager> {
    const m = await ShimManager.create({
      stateDir: this.stateDir,
      address: this.address,
      handlers: this.handlers,
      records: this.records,
      shimEnv: { BERTH_SHIM_SOCKET_DIR: this.shimSocketDir },
      logger,
    });
    m.onEvent((e) => this.events.push(e));
    return m;
  }

  bundle(id: string, args: string[], opts: { annotations?: Record<string, string>; rootfsDir?: string } = {}): string {
    const dir = join(this.root, "bundles", id);
    makeBundle(dir, {
      args,
      annotations: opts.annotations,
      rootfsDir: opts.rootfsDir,
      cgroupsPath: `/berth-rt-test/${id}-${process.pid}`,
    });
    return dir;
  }

  /** A fifo with `cat` reading it (a blocking reader, like a container's log reader); `text` resolves at EOF. */
  fifoReader(name: string): { path: string; text: Promise<string> } {
    const path = this.out(name);
    spawnSync("mkfifo", ["-m", "0600", path]);
    const cat = spawn("cat", [path], { stdio: ["ignore", "pipe", "inherit"] });
    this.readers.push(cat);
    let buf = "";
    cat.stdout.setEncoding("utf8").on("data", (d: string) => (buf += d));
    return { path, text: new Promise((resolve) => cat.once("close", () => resolve(buf))) };
  }

  /** createTask through the current manager, remembering the shim's socket for assertNothingLeft. */
  async create(req: CreateTaskOptions): Promise<CreatedTask> {
    const created = await this.manager.createTask(req);
    this.addresses.add(created.address);
    return created;
  }

  out(name: string): string {
    mkdirSync(join(this.root, "out"), { recursive: true });
    return join(this.root, "out", name);
  }

  /** Serving shim processes started for this test (their command line carries our -address). */
  shimPids(): number[] {
    const out: number[] = [];
    for (const name of readdirSync("/proc")) {
      if (!/^\d+$/.test(name)) continue;
      try {
        const cmd = readFileSync(`/proc/${name}/cmdline`, "utf8").split("\0");
        if (cmd.includes(this.address) && alive(Number(name))) out.push(Number(name));
      } catch {
        // gone
      }
    }
    return out;
  }

  /** The runc shim uses <root>/<namespace> as runc's root; berth's shim uses the root as given. */
  get runcRoots(): string[] {
    return [join(this.runcRoot, NS), this.runcRoot];
  }

  runcContainers(): string[] {
    return this.runcRoots.flatMap((root) => {
      const r = spawnSync("runc", ["--root", root, "list", "-q"], { encoding: "utf8" });
      return r.status === 0
        ? r.stdout
            .split("\n")
            .filter(Boolean)
            .map((id) => `${root}:${id}`)
        : [];
    });
  }

  mountsUnderRoot(): string[] {
    return readFileSync("/proc/self/mountinfo", "utf8")
      .split("\n")
      .map((l) => l.split(" ")[4])
      .filter((m): m is string => !!m && m.startsWith(this.root + "/"));
  }

  exits(id: string): TaskExitEvent[] {
    return this.events.filter((e): e is TaskExitEvent => e.type === "exit" && e.containerId === id && e.execId === "");
  }

  async cleanup(): Promise<void> {
    if (this.cleaned) return;
    this.cleaned = true;
    live.delete(this);
    for (const r of this.readers) r.kill("SIGKILL");
    const m = this.manager;
    for (const r of m.list()) {
      await withTimeout(
        m.kill(r.namespace, r.id, 9, { all: true }).catch(() => {}),
        5000,
      );
      await withTimeout(
        m.delete(r.namespace, r.id).catch(() => {}),
        10_000,
      );
    }
    await m.close();
    for (const pid of this.shimPids()) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // gone
      }
    }
    // A shim killed above (a test that failed half-way) leaves its socket in /run/containerd/s;
    // the sockets are this test's alone (named after its own berthd address).
    for (const a of this.addresses) rmSync(a.replace(/^unix:\/\//, ""), { force: true });
    for (const c of this.runcContainers()) {
      const [root, id] = c.split(":") as [string, string];
      spawnSync("runc", ["--root", root, "delete", "--force", id]);
    }
    for (const mnt of this.mountsUnderRoot().sort((a, b) => b.length - a.length)) spawnSync("umount", ["-l", mnt]);
    for (const ctl of readdirSync("/sys/fs/cgroup")) {
      const dir = join("/sys/fs/cgroup", ctl, "berth-rt-test");
      if (!existsSync(dir)) continue;
      for (const sub of readdirSync(dir)) {
        if (sub.endsWith(`-${process.pid}`)) spawnSync("rmdir", [join(dir, sub)]);
      }
      spawnSync("rmdir", [dir]); // only succeeds when no other run uses it
    }
    rmSync(this.root, { recursive: true, force: true });
  }
}

/** Environments not cleaned up yet: a test that times out never reaches its `finally`. */
const live = new Set<Env>();
after(async () => {
  for (const env of [...live]) await env.cleanup();
});

/** Everything a finished test must have released. */
async function assertNothingLeft(env: Env): Promise<void> {
  await until(() => env.shimPids().length === 0, "the shims to exit");
  assert.deepEqual(env.runcContainers(), [], "no runc state left");
  assert.deepEqual(env.mountsUnderRoot(), [], "no mounts left");
  assert.deepEqual(await env.records.list(), [], "no records left");
  for (const a of env.addresses) assert.ok(!existsSync(a.replace(/^unix:\/\//, "")), `shim socket ${a} removed`);
}

function bindRootfs(dir: string): Mount[] {
  return [{ type: "bind", source: dir, target: "", options: ["rbind", "rw"] }];
}

function execSpec(args: string[]): object {
  return { terminal: false, user: { uid: 0, gid: 0 }, args, env: ["PATH=/bin:/usr/bin:/sbin:/usr/sbin"], cwd: "/" };
}

// ---- pieces that need no shim ------------------------------------------------------------

describe("runtime handlers", () => {
  test("a runtime type names its shim binary, found on PATH or in the repo's bin/", () => {
    assert.equal(shimBinaryName("io.containerd.runc.v2"), "containerd-shim-runc-v2");
    assert.equal(shimBinaryName("io.containerd.berth.v2"), "containerd-shim-berth-v2");
    assert.throws(() => shimBinaryName("runc"), InvalidArgumentError);
    assert.equal(resolveShimBinary(RUNC_RUNTIME_TYPE), "/usr/bin/containerd-shim-runc-v2");
    assert.equal(repoBinDir(), join(REPO, "bin"));
    // Not on PATH: found in place in the repository.
    assert.equal(resolveShimBinary(BERTH_RUNTIME_TYPE, { path: "/nonexistent" }), BERTH_SHIM);
    assert.throws(
      () => resolveShimBinary("io.containerd.nosuch.v2"),
      (err: Error) => {
        assert.ok(err instanceof NotFoundError);
        assert.match(err.message, /containerd-shim-nosuch-v2 is not installed/);
        return true;
      },
    );
  });

  test("handlers default sensibly, validate options, and unknown names fail clearly", () => {
    const hs = new RuntimeClasses(
      { runc: {}, gvisor: { binaryName: "runsc", options: { systemd_cgroup: false, NoPivotRoot: true } } },
      "runc",
    );
    const def = hs.get("");
    assert.equal(def.name, "runc");
    assert.equal(def.runtimeType, BERTH_RUNTIME_TYPE);
    assert.equal(def.binaryName, "runc");
    assert.equal(def.restartableShim, true);
    assert.equal(hs.get("gvisor").runcOptions.binaryName, "runsc");
    assert.equal(hs.get("gvisor").runcOptions.noPivotRoot, true);
    assert.throws(
      () => hs.get("kata"),
      (err: Error) => err instanceof NotFoundError && /no runtime handler named "kata"/.test(err.message),
    );
    assert.throws(() => makeRuntimeHandler("x", { options: { bogus: 1 } }), InvalidArgumentError);
    assert.throws(() => makeRuntimeHandler("x", { options: { systemd_cgroup: "yes" } }), InvalidArgumentError);
    assert.throws(() => new RuntimeClasses({ runc: {} }, "missing"), InvalidArgumentError);
  });

  test("start output: plain address, JSON, and the BootstrapResult protobuf; the task API they announce", () => {
    assert.deepEqual(parseStartOutput("unix:///run/containerd/s/abc"), {
      address: "unix:///run/containerd/s/abc",
      taskApi: 2,
    });
    assert.deepEqual(parseStartOutput('{"version":2,"address":"unix:///run/x.sock","protocol":"ttrpc"}\n'), {
      address: "unix:///run/x.sock",
      taskApi: 2,
    });
    // containerd 2.0-2.2 runc shims: JSON announcing task API v3
    assert.deepEqual(parseStartOutput('{"version":3,"address":"unix:///run/y.sock","protocol":"ttrpc"}'), {
      address: "unix:///run/y.sock",
      taskApi: 3,
    });
    // containerd 2.3+ shims: a BootstrapResult protobuf
    const proto = (r: Partial<BootstrapResult>) =>
      Buffer.from(BootstrapResult.encode(BootstrapResult.fromPartial(r)).finish());
    assert.deepEqual(parseStartOutput(proto({ version: 3, address: "unix:///run/z.sock", protocol: "ttrpc" })), {
      address: "unix:///run/z.sock",
      taskApi: 3,
    });
    assert.throws(() => parseStartOutput(proto({ version: 4, address: "unix:///z", protocol: "ttrpc" })), /version 4/);
    assert.throws(() => parseStartOutput(proto({ version: 3, address: "vsock://3:1", protocol: "grpc" })), /grpc/);
    assert.throws(() => parseStartOutput(proto({ version: 3 })), /without an address/);
    assert.throws(() => parseStartOutput(""), InvalidArgumentError);
    assert.throws(
      () => parseStartOutput('{"version":2,"address":"unix:///x","protocol":"grpc"}'),
      InvalidArgumentError,
    );
  });

  test("start input: which shims want BootstrapParams, and what the params carry", () => {
    assert.equal(bootstrapFromVersionOutput("containerd-shim-runc-v2:\n  Version:  2.4.2+unknown\n"), true);
    assert.equal(bootstrapFromVersionOutput("containerd-shim-runc-v2:\n  Version:  v2.3.0\n"), true);
    assert.equal(bootstrapFromVersionOutput("containerd-shim-runc-v2:\n  Version:  2.2.1\n"), false);
    assert.equal(bootstrapFromVersionOutput("containerd-shim-runc-v2:\n  Version:  1.6.20~ds1\n"), false);
    assert.equal(bootstrapFromVersionOutput("containerd-shim-berth-v2:\n  Version:  berth-shim 0.1.0\n"), false);
    assert.equal(bootstrapFromVersionOutput(""), false);

    const options = runcOptionsAny(makeRuntimeHandler("runc", { root: "/run/r" }));
    const p = BootstrapParams.decode(
      encodeBootstrapParams(
        { id: "c1", namespace: "k8s.io", address: "/run/b.sock", ttrpcAddress: "/run/e.sock", publishBinary: "/bin/b" },
        options,
      ),
    );
    assert.equal(p.instanceId, "c1");
    assert.equal(p.namespace, "k8s.io");
    assert.equal(p.containerdGrpcAddress, "/run/b.sock");
    assert.equal(p.containerdTtrpcAddress, "/run/e.sock");
    assert.equal(p.containerdBinary, "/bin/b");
    assert.equal(p.logLevel, LogLevel.LOG_LEVEL_INFO);
    assert.equal(p.socketDir, undefined, "the shim's default socket dir");
    assert.deepEqual(
      p.extensions.map((e) => e.value?.typeUrl),
      ["containerd.runc.v1.Options"],
    );
  });

  test("events: a forwarded TaskExit envelope decodes to a typed exit event", () => {
    const value = Buffer.from(
      TaskExit.encode({
        containerId: "c1",
        id: "c1",
        pid: 42,
        exitStatus: 3,
        exitedAt: { seconds: 1700000000n, nanos: 5_000_000 },
      }).finish(),
    );
    const ev = decodeEnvelope({
      timestamp: { seconds: 1700000001n, nanos: 0 },
      namespace: "k8s.io",
      topic: "/tasks/exit",
      event: { typeUrl: "containerd.events.TaskExit", value },
    });
    assert.equal(ev.type, "exit");
    if (ev.type !== "exit") return;
    assert.equal(ev.containerId, "c1");
    assert.equal(ev.execId, "", "init process: id == container id");
    assert.equal(ev.exitStatus, 3);
    assert.equal(ev.exitedAt.getTime(), 1700000000005);
    assert.equal(ev.namespace, "k8s.io");
    const unknown = decodeEnvelope({
      timestamp: undefined,
      namespace: "n",
      topic: "/x",
      event: { typeUrl: "x.Y", value: Buffer.from([1]) },
    });
    assert.equal(unknown.type, "unknown");
  });
});

describe("file record store", () => {
  test("records are written atomically with mode 0600 and survive a new store", async () => {
    const dir = mkdtempSync("/tmp/berth-rt-records-");
    try {
      const s = new FileShimRecordStore(dir);
      const rec = {
        namespace: "k8s.io",
        id: "c1",
        address: "unix:///run/x",
        handler: "runc",
        runtimeType: RUNC_RUNTIME_TYPE,
        shimBinary: "/usr/bin/containerd-shim-runc-v2",
        bundle: "/run/b/c1",
        sandboxId: "pod1",
        createdAt: new Date().toISOString(),
      };
      await s.put(rec);
      await s.put({ ...rec, id: "c2" });
      assert.equal(statSync(join(dir, "k8s.io", "c1.json")).mode & 0o777, 0o600);
      const again = new FileShimRecordStore(dir);
      assert.deepEqual(await again.get("k8s.io", "c1"), rec);
      assert.deepEqual(
        (await again.list()).map((r) => r.id),
        ["c1", "c2"],
      );
      await again.delete("k8s.io", "c1");
      assert.equal(await again.get("k8s.io", "c1"), undefined);
      assert.deepEqual(readdirSync(join(dir, "k8s.io")), ["c2.json"], "no temporary files left");
      await assert.rejects(s.get("k8s.io", "../etc"), InvalidArgumentError);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// ---- against containerd-shim-runc-v2 -----------------------------------------------------

/** The tests every shim must pass, plus the ones where the two shims differ by design. */
function shimSuite(kind: ShimKind): void {
  test(
    "create/start/wait gives the container's output and exit code; delete leaves nothing behind",
    { timeout: 90_000 },
    async () => {
      const env = await Env.create(kind);
      try {
        const m = env.manager;
        const image = join(env.root, "image-c1");
        const bundle = env.bundle("c1", ["/bin/sh", "-c", "echo hello from busybox; echo oops >&2; exit 3"], {
          rootfsDir: image,
        });
        // stdout and stderr through fifos, as the CRI layer passes them.
        const stdout = env.fifoReader("c1-stdout");
        const stderr = env.fifoReader("c1-stderr");
        const created = await env.create({
          namespace: NS,
          id: "c1",
          bundle,
          rootfs: bindRootfs(image),
          stdout: stdout.path,
          stderr: stderr.path,
          handler: kind,
        });
        assert.ok(created.pid > 0);
        assert.match(created.address, /^unix:\/\//);
        assert.equal((await m.state(NS, "c1")).status, "created");
        assert.equal(statSync(join(env.stateDir, EVENTS_SOCKET_NAME)).mode & 0o777, 0o600, "events socket is 0600");
        const rec = await env.records.get(NS, "c1");
        assert.equal(rec?.address, created.address);
        assert.equal(rec?.bundle, bundle);
        const { shimPid } = await m.connect(NS, "c1");
        assert.ok(alive(shimPid));

        assert.equal(await m.start(NS, "c1"), created.pid);
        const exit = await m.wait(NS, "c1");
        assert.equal(exit.exitStatus, 3);
        assert.equal(await stdout.text, "hello from busybox\n");
        assert.equal(await stderr.text, "oops\n");
        const st = await m.state(NS, "c1");
        assert.equal(st.status, "stopped");
        assert.equal(st.exitStatus, 3);
        assert.equal(st.bundle, bundle);

        const del = await m.delete(NS, "c1");
        assert.equal(del.exitStatus, 3);
        await until(() => !alive(shimPid), "the shim to exit after Shutdown");
        await assertNothingLeft(env);
        await assert.rejects(m.state(NS, "c1"), NotFoundError);

        const topics = await until(() => {
          const t = env.events.filter((e) => e.type !== "unknown" && e.containerId === "c1").map((e) => e.type);
          return t.includes("delete") ? t : undefined;
        }, "the delete event");
        assert.deepEqual(topics, ["create", "start", "exit", "delete"]);
        assert.equal(env.exits("c1")[0]?.exitStatus, 3);
      } finally {
        await env.cleanup();
      }
    },
  );

  test("exec, pids, pause/resume, update, stats and SIGKILL on a running container", { timeout: 90_000 }, async () => {
    const env = await Env.create(kind);
    try {
      const m = env.manager;
      const bundle = env.bundle("c2", ["sleep", "1000"]);
      const { pid } = await env.create({ namespace: NS, id: "c2", bundle });
      await m.start(NS, "c2");
      assert.equal((await m.state(NS, "c2")).status, "running");

      const execOut = env.out("e1.out");
      // file:// with no stderr: the runc shim would panic; the manager passes stdout's URI for both.
      await m.exec(NS, "c2", "e1", {
        spec: execSpec(["/bin/sh", "-c", "echo from exec; exit 7"]),
        stdout: `file://${execOut}`,
      });
      const execPid = await m.start(NS, "c2", "e1");
      assert.ok(execPid > 0 && execPid !== pid);
      const execExit = await m.wait(NS, "c2", "e1");
      assert.equal(execExit.exitStatus, 7);
      assert.equal(readFileSync(execOut, "utf8"), "from exec\n");
      assert.equal((await m.state(NS, "c2", "e1")).status, "stopped");
      assert.equal((await m.deleteProcess(NS, "c2", "e1")).exitStatus, 7);
      await assert.rejects(m.state(NS, "c2", "e1"), NotFoundError);

      const pids = (await m.pids(NS, "c2")).map((p) => p.pid);
      assert.ok(pids.includes(pid), `pids ${pids} include the init pid ${pid}`);

      await m.pause(NS, "c2");
      assert.equal((await m.state(NS, "c2")).status, "paused");
      await m.resume(NS, "c2");
      assert.equal((await m.state(NS, "c2")).status, "running");

      await m.update(NS, "c2", { pids: { limit: 77 } });
      const cg = `/sys/fs/cgroup/pids/berth-rt-test/c2-${process.pid}/pids.max`;
      assert.equal(readFileSync(cg, "utf8").trim(), "77");

      const stats = await m.stats(NS, "c2");
      assert.match(stats.typeUrl, /io\.containerd\.cgroups\.v1\.Metrics$/);
      assert.ok(stats.v1?.pids && stats.v1.pids.current >= 1n, "the pids metric counts the sleeping process");
      assert.ok(
        stats.v1?.memory && stats.v1.memory.usage && stats.v1.memory.usage.usage > 0n,
        "memory usage is reported",
      );

      await m.kill(NS, "c2", 9);
      const exit = await m.wait(NS, "c2");
      assert.equal(exit.exitStatus, 137);
      await m.delete(NS, "c2");
      assert.ok(!alive(pid));
      await assertNothingLeft(env);
    } finally {
      await env.cleanup();
    }
  });

  test(
    "two containers with one sandbox id share one shim, which exits after the last delete",
    { timeout: 90_000 },
    async () => {
      const env = await Env.create(kind);
      try {
        const m = env.manager;
        const annotations = { [SANDBOX_ID_ANNOTATION]: "pod-a" };
        const a = await env.create({
          namespace: NS,
          id: "pa",
          bundle: env.bundle("pa", ["sleep", "1000"], { annotations }),
          sandboxId: "pod-a",
        });
        const b = await env.create({
          namespace: NS,
          id: "pb",
          bundle: env.bundle("pb", ["sleep", "1000"], { annotations }),
          sandboxId: "pod-a",
        });
        assert.equal(a.address, b.address);
        const sa = await m.connect(NS, "pa");
        const sb = await m.connect(NS, "pb");
        assert.equal(sa.shimPid, sb.shimPid);
        assert.deepEqual(env.shimPids(), [sa.shimPid]);
        assert.equal((await env.records.get(NS, "pb"))?.sandboxId, "pod-a");
        await m.start(NS, "pa");
        await m.start(NS, "pb");

        await m.kill(NS, "pa", 9);
        await m.wait(NS, "pa");
        await m.delete(NS, "pa");
        assert.ok(alive(sa.shimPid), "the shim stays for its other task");
        assert.equal((await m.state(NS, "pb")).status, "running");

        await m.kill(NS, "pb", 9);
        assert.equal((await m.wait(NS, "pb")).exitStatus, 137);
        await m.delete(NS, "pb");
        await assertNothingLeft(env);
      } finally {
        await env.cleanup();
      }
    },
  );

  test(
    "a manager killed with SIGKILL leaves containers running; a new one recovers states and exit codes",
    { timeout: 90_000 },
    async () => {
      const env = await Env.create(kind);
      try {
        // The first manager lives in a child process that we kill -9.
        await env.manager.close();
        const bundles = {
          r1: env.bundle("r1", ["sleep", "1000"]),
          r2: env.bundle("r2", ["sleep", "1000"]),
          x1: env.bundle("x1", ["/bin/sh", "-c", "sleep 2; exit 5"]),
        };
        const runtimeIndex = new URL("../../src/runtime/index.js", import.meta.url).href;
        const child = spawn(
          process.execPath,
          [
            "--input-type=module",
            "-e",
            `
          import { ShimManager, FileShimRecordStore, RuntimeClasses } from ${JSON.stringify(runtimeIndex)};
          const cfg = JSON.parse(process.argv[1]);
          const m = await ShimManager.create({
            stateDir: cfg.stateDir, address: cfg.address,
            records: new FileShimRecordStore(cfg.recordsDir),
            handlers: new RuntimeClasses({ [cfg.kind]: { runtimeType: cfg.runtimeType, root: cfg.runcRoot } }, cfg.kind),
            shimEnv: cfg.shimEnv,
          });
          const pids = {};
          for (const [id, bundle] of Object.entries(cfg.bundles)) {
            pids[id] = (await m.createTask({ namespace: cfg.ns, id, bundle })).pid;
            await m.start(cfg.ns, id);
          }
          console.log("READY " + JSON.stringify(pids));
          setInterval(() => {}, 1000);
          `,
            JSON.stringify({
              stateDir: env.stateDir,
              address: env.address,
              recordsDir: env.recordsDir,
              runcRoot: env.runcRoot,
              ns: NS,
              bundles,
              kind,
              runtimeType: runtimeTypeOf(kind),
              shimEnv: { BERTH_SHIM_SOCKET_DIR: env.shimSocketDir },
            }),
          ],
          { stdio: ["ignore", "pipe", "inherit"] },
        );
        let text = "";
        child.stdout.setEncoding("utf8").on("data", (d: string) => (text += d));
        const pids = await until(
          () => {
            if (child.exitCode !== null) throw new Error(`the child manager exited with ${child.exitCode}`);
            return /READY (.*)\n/.exec(text)?.[1];
          },
          "the child manager to start its containers",
          60_000,
        ).then((j) => JSON.parse(j) as Record<string, number>);
        child.kill("SIGKILL");
        await new Promise((r) => child.once("exit", r));
        // The runc shim: one per container without a sandbox id; berth's: one for all.
        assert.equal(env.shimPids().length, kind === "berth" ? 1 : 3);
        for (const id of ["r1", "r2"]) assert.ok(alive(pids[id]!), `${id} survives its manager`);
        await until(() => !alive(pids.x1!), "x1 to exit on its own");

        env.manager = await env.newManager();
        const recovered = await env.manager.recover();
        for (const r of recovered) env.addresses.add(r.address);
        // x1's process is gone, but its shim may not have taken in the exit yet (it reaps, then
        // records): recovery reports what the shim knows at that moment, so x1 is either still
        // running or already stopped; Wait is what blocks until the shim has the exit.
        const states = new Map(recovered.map((r) => [r.id, [r.outcome, r.status]]));
        assert.deepEqual([...states.keys()].sort(), ["r1", "r2", "x1"]);
        assert.deepEqual(states.get("r1"), ["live", "running"]);
        assert.deepEqual(states.get("r2"), ["live", "running"]);
        assert.equal(states.get("x1")?.[0], "live");
        assert.ok(
          ["running", "stopped"].includes(String(states.get("x1")?.[1])),
          `x1 recovered as ${states.get("x1")}`,
        );
        const m = env.manager;
        assert.equal((await m.state(NS, "r1")).pid, pids.r1);
        assert.equal((await m.state(NS, "r2")).status, "running");
        assert.equal((await m.wait(NS, "x1")).exitStatus, 5);
        const x1 = await m.state(NS, "x1");
        assert.equal(x1.status, "stopped");
        assert.equal(x1.exitStatus, 5, "the real exit code, kept by the shim while no manager listened");

        for (const id of ["r1", "r2"]) {
          await m.kill(NS, id, 9);
          assert.equal((await m.wait(NS, id)).exitStatus, 137);
        }
        for (const id of ["r1", "r2", "x1"]) await m.delete(NS, id);
        await assertNothingLeft(env);
      } finally {
        await env.cleanup();
      }
    },
  );

  if (kind !== "berth")
    test(
      "a shim killed with SIGKILL: its task is reported exited with the reason, and delete cleans up",
      { timeout: 90_000 },
      async () => {
        const env = await Env.create(kind);
        try {
          const m = env.manager;
          const { pid } = await env.create({ namespace: NS, id: "d1", bundle: env.bundle("d1", ["sleep", "1000"]) });
          await m.start(NS, "d1");
          const { shimPid, address } = await m.connect(NS, "d1");
          const waiting = m.wait(NS, "d1");

          process.kill(shimPid, "SIGKILL");
          const ev = await until(() => env.exits("d1")[0], "the exit event for the dead shim's task");
          assert.equal(ev.exitStatus, 255);
          assert.equal(ev.reason, `shim exited: ${address} unreachable`);
          const w = await waiting;
          assert.equal(w.exitStatus, 255, "a pending Wait resolves instead of hanging");
          assert.equal(w.reason, ev.reason);
          const st = await m.state(NS, "d1");
          assert.equal(st.status, "stopped");
          assert.equal(st.exitStatus, 255);
          assert.equal(st.reason, ev.reason);
          await assert.rejects(m.kill(NS, "d1", 9), NotFoundError);

          const del = await m.delete(NS, "d1");
          assert.equal(del.exitStatus, 255);
          // The runc shim's delete command force-deletes the orphaned container.
          await until(() => !alive(pid), "the orphaned container to be killed");
          await assertNothingLeft(env);
          assert.equal(env.exits("d1").length, 1, "reported once");
        } finally {
          await env.cleanup();
        }
      },
    );

  if (kind !== "berth")
    test(
      "bad input fails with typed errors and leaves no shim, record or mount behind",
      { timeout: 90_000 },
      async () => {
        const env = await Env.create(kind);
        try {
          const m = env.manager;
          const good = env.bundle("b1", ["true"]);
          await assert.rejects(
            m.createTask({ namespace: NS, id: "b1", bundle: good, handler: "kata" }),
            (err: Error) => {
              assert.ok(err instanceof NotFoundError);
              assert.match(err.message, /no runtime handler named "kata"/);
              return true;
            },
          );
          await assert.rejects(
            m.createTask({ namespace: NS, id: "nob", bundle: join(env.root, "bundles", "nob") }),
            (err: Error) => {
              assert.ok(err instanceof InvalidArgumentError);
              assert.match(err.message, /does not exist/);
              return true;
            },
          );
          const noConfig = join(env.root, "bundles", "nocfg");
          mkdirSync(noConfig, { recursive: true });
          await assert.rejects(m.createTask({ namespace: NS, id: "nocfg", bundle: noConfig }), (err: Error) => {
            assert.ok(err instanceof InvalidArgumentError);
            assert.match(err.message, /has no config\.json/);
            return true;
          });
          await assert.rejects(m.createTask({ namespace: NS, id: "other", bundle: good }), InvalidArgumentError);
          await assert.rejects(m.createTask({ namespace: NS, id: "bad/id", bundle: good }), InvalidArgumentError);

          // runc refuses the bundle at create time: the shim it started must be gone afterwards.
          const image = join(env.root, "image-b2");
          const broken = env.bundle("b2", ["/no/such/binary"], { rootfsDir: image });
          await assert.rejects(
            m.createTask({ namespace: NS, id: "b2", bundle: broken, rootfs: bindRootfs(image) }),
            (err: Error) => {
              assert.match(err.message, /no such file or directory/);
              return true;
            },
          );
          assert.deepEqual(m.list(), []);
          await assertNothingLeft(env);

          // A broken config.json: the runc shim's start fails to read it.
          const garbled = env.bundle("b3", ["true"]);
          writeFileSync(join(garbled, "config.json"), "{ not json");
          await assert.rejects(m.createTask({ namespace: NS, id: "b3", bundle: garbled }), /shim start for task b3/);
          await assertNothingLeft(env);
        } finally {
          await env.cleanup();
        }
      },
    );

  if (kind === "berth") {
    test(
      "berth's shim killed with SIGKILL is started again and re-adopts its running containers",
      { timeout: 90_000 },
      async () => {
        const env = await Env.create(kind);
        try {
          const m = env.manager;
          const { pid } = await env.create({ namespace: NS, id: "k1", bundle: env.bundle("k1", ["sleep", "1000"]) });
          await m.start(NS, "k1");
          const before = await m.connect(NS, "k1");
          const waiting = m.wait(NS, "k1");

          process.kill(before.shimPid, "SIGKILL");
          const after = await until(async () => {
            const info = await m.connect(NS, "k1").catch(() => undefined);
            return info && info.shimPid !== before.shimPid ? info : undefined;
          }, "a new shim to serve k1");
          assert.equal(after.taskPid, pid);
          assert.ok(alive(pid), "the container lived through its shim's death");
          const st = await m.state(NS, "k1");
          assert.equal(st.status, "running");
          assert.equal(st.reason, undefined);
          assert.deepEqual(env.exits("k1"), [], "no exit reported for a re-adopted container");

          await m.kill(NS, "k1", 9);
          assert.equal((await waiting).exitStatus, 137, "a Wait pending across the restart gets the real exit");
          await m.delete(NS, "k1");
          await assertNothingLeft(env);
        } finally {
          await env.cleanup();
        }
      },
    );

    test(
      "recover() starts berth's shim again when it died while no manager was running",
      { timeout: 90_000 },
      async () => {
        const env = await Env.create(kind);
        try {
          const { pid } = await env.create({ namespace: NS, id: "k2", bundle: env.bundle("k2", ["sleep", "1000"]) });
          await env.manager.start(NS, "k2");
          const { shimPid } = await env.manager.connect(NS, "k2");
          await env.manager.close();
          process.kill(shimPid, "SIGKILL");
          await until(() => !alive(shimPid), "the shim to die");

          env.manager = await env.newManager();
          const m = env.manager;
          const recovered = await m.recover();
          assert.deepEqual(
            recovered.map((r) => [r.id, r.outcome, r.status]),
            [["k2", "restarted", "running"]],
          );
          assert.equal((await m.state(NS, "k2")).pid, pid);
          await m.kill(NS, "k2", 9);
          assert.equal((await m.wait(NS, "k2")).exitStatus, 137);
          await m.delete(NS, "k2");
          await assertNothingLeft(env);
        } finally {
          await env.cleanup();
        }
      },
    );
  }
}

describe("with containerd-shim-runc-v2", () => shimSuite("runc"));
describe("with containerd 2.4's containerd-shim-runc-v2", () => shimSuite("runc-2.4"));
describe("with containerd-shim-berth-v2", () => shimSuite("berth"));
