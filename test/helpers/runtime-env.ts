// The world of the runtime suites (test/e2e/runtime*.test.ts): a private root per test with the
// shim manager's state, records, runc root and bundles, and what a finished test must have released.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { after } from "node:test";
import assert from "node:assert/strict";
import type { Mount } from "../../src/gen/containerd/types/mount.js";
import {
  BERTH_RUNTIME_TYPE,
  FileShimRecordStore,
  RUNC_RUNTIME_TYPE,
  RuntimeClasses,
  ShimManager,
  type CreateTaskOptions,
  type CreatedTask,
  type RuntimeEvent,
  type TaskExitEvent,
} from "../../src/runtime/index.js";
import { createLogger, silentLogger } from "../../src/util/log.js";
import { makeBundle } from "./bundle.js";
import { goTool } from "./go-tools.js";

/** BERTH_TEST_LOG=debug shows the manager's and the shims' logs. */
export const logger = process.env.BERTH_TEST_LOG ? createLogger({ level: "debug", format: "text" }) : silentLogger();

export const NS = "berth-test";

export type ShimKind = "runc" | "runc-2.4" | "berth";

/** The runtime type of each kind's handler; containerd 2.4's shim by its absolute path. */
export function runtimeTypeOf(kind: ShimKind): string {
  if (kind === "berth") return BERTH_RUNTIME_TYPE;
  return kind === "runc" ? RUNC_RUNTIME_TYPE : goTool("containerd-2.4", "containerd-shim-runc-v2");
}
export const REPO = new URL("../../..", import.meta.url).pathname.replace(/\/$/, "");
export const BERTH_SHIM = join(REPO, "bin/containerd-shim-berth-v2");

import { sleep, until } from "./cri.js";

export { sleep, until };

/** Alive and not a zombie (pid 1 of this machine reaps orphans lazily). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return !stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z");
  } catch {
    return false;
  }
}

export function withTimeout<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  return Promise.race([p, sleep(ms).then(() => undefined)]);
}

/** One test's world: a private root with the manager's state, records, runc root and bundles. */
export class Env {
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
export const live = new Set<Env>();
after(async () => {
  for (const env of [...live]) await env.cleanup();
});

/** Everything a finished test must have released. */
export async function assertNothingLeft(env: Env): Promise<void> {
  await until(() => env.shimPids().length === 0, "the shims to exit");
  assert.deepEqual(env.runcContainers(), [], "no runc state left");
  assert.deepEqual(env.mountsUnderRoot(), [], "no mounts left");
  assert.deepEqual(await env.records.list(), [], "no records left");
  for (const a of env.addresses) assert.ok(!existsSync(a.replace(/^unix:\/\//, "")), `shim socket ${a} removed`);
}

export function bindRootfs(dir: string): Mount[] {
  return [{ type: "bind", source: dir, target: "", options: ["rbind", "rw"] }];
}

export function execSpec(args: string[]): object {
  return { terminal: false, user: { uid: 0, gid: 0 }, args, env: ["PATH=/bin:/usr/bin:/sbin:/usr/sbin"], cwd: "/" };
}

// ---- pieces that need no shim ------------------------------------------------------------
