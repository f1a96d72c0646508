// Test harness for berth's shim: a private socket/state root, an events receiver standing
// in for containerd's ttrpc events service, `start` through the real binary, and a
// cleanup that removes every shim, monitor, container, mount and file it made.
import { execFileSync, spawnSync } from "node:child_process";
import { createReadStream, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";

import { Options } from "../../src/gen/containerd/runc/options/oci.js";
import { TaskDefinition } from "../../src/gen/containerd/runtime/v2/task/shim.js";
import { EventsDefinition, type Envelope } from "../../src/gen/containerd/services/ttrpc/events/v1/events.js";
import type { Any } from "../../src/gen/google/protobuf/any.js";
import { makeBundle } from "./bundle.js";
import { TtrpcClient, TtrpcServer, createClient, type ServiceClient } from "../../src/ttrpc/index.js";

export const REPO = new URL("../../..", import.meta.url).pathname.replace(/\/$/, "");
export const SHIM_BIN = join(REPO, "bin/containerd-shim-berth-v2");
export const MONITOR_BIN = join(REPO, "build/berth-monitor");

/** Builds the monitor if a native rebuild removed it (node-gyp wipes build/). */
export function ensureMonitor(): void {
  try {
    readFileSync(MONITOR_BIN);
  } catch {
    execFileSync("npm", ["run", "-s", "build:monitor"], { cwd: REPO, stdio: "inherit" });
  }
}

export type TaskClient = ServiceClient<typeof TaskDefinition>;

export class ShimHarness {
  readonly events: Envelope[] = [];
  readonly socketDir: string;
  readonly runcRoot: string;
  readonly eventsSock: string;
  readonly address: string;
  private server: TtrpcServer | undefined;
  private clients: TtrpcClient[] = [];

  private constructor(
    readonly root: string,
    readonly namespace: string,
  ) {
    this.socketDir = join(root, "shim");
    this.runcRoot = join(root, "runc");
    this.eventsSock = join(root, "events.sock");
    // stands in for containerd's grpc address: it names the shim group
    this.address = join(root, "containerd.sock");
  }

  static async create(namespace = "berth-test"): Promise<ShimHarness> {
    ensureMonitor();
    const h = new ShimHarness(mkdtempSync("/tmp/berth-shim-test-"), namespace);
    h.server = new TtrpcServer();
    h.server.register(EventsDefinition, {
      forward: (req) => {
        if (req.envelope) h.events.push(req.envelope);
        return {};
      },
    });
    await h.server.listen(h.eventsSock);
    return h;
  }

  get env(): NodeJS.ProcessEnv {
    return { ...process.env, BERTH_SHIM_SOCKET_DIR: this.socketDir, TTRPC_ADDRESS: this.eventsSock };
  }

  /** Runs `containerd-shim-berth-v2 start` in the bundle as containerd does; returns the address. */
  start(bundle: string, id: string, address = this.address): string {
    const r = spawnSync(
      SHIM_BIN,
      ["-namespace", this.namespace, "-address", address, "-publish-binary", "/usr/bin/containerd", "-id", id, "start"],
      {
        cwd: bundle,
        env: this.env,
        encoding: "utf8",
      },
    );
    if (r.status !== 0) throw new Error(`shim start failed (${r.status}): ${r.stderr}`);
    return r.stdout;
  }

  /** Runs `delete`; returns its raw stdout (a DeleteResponse). */
  deleteCmd(bundle: string, id: string): Buffer {
    const r = spawnSync(
      SHIM_BIN,
      ["-namespace", this.namespace, "-address", this.address, "-id", id, "-bundle", bundle, "delete"],
      {
        cwd: bundle,
        env: this.env,
      },
    );
    if (r.status !== 0) throw new Error(`shim delete failed (${r.status}): ${r.stderr.toString()}`);
    return r.stdout;
  }

  async connect(address: string): Promise<{ conn: TtrpcClient; task: TaskClient }> {
    const conn = await TtrpcClient.connect(address);
    this.clients.push(conn);
    return { conn, task: createClient(TaskDefinition, conn) };
  }

  get md() {
    return { metadata: { "containerd-namespace-ttrpc": this.namespace } };
  }

  /** containerd.runc.v1.Options choosing the runtime binary and a private state root. */
  options(binaryName = "runc", root = this.runcRoot): Any {
    return {
      typeUrl: "containerd.runc.v1.Options",
      value: Buffer.from(Options.encode(Options.fromPartial({ binaryName, root })).finish()),
    };
  }

  /**
   * A Create request for a new bundle <root>/<id> (busybox rootfs) running `args`, with this
   * harness's options (`binaryName` picks another runtime binary).
   */
  createRequest(id: string, args: string[], o: { stdout?: string; binaryName?: string } = {}) {
    const bundle = join(this.root, id);
    makeBundle(bundle, { args });
    return {
      id,
      bundle,
      rootfs: [],
      terminal: false,
      stdin: "",
      stdout: o.stdout ?? "",
      stderr: "",
      checkpoint: "",
      parentCheckpoint: "",
      options: this.options(o.binaryName),
    };
  }

  topics(containerId?: string): string[] {
    return this.events
      .filter((e) => {
        if (!containerId) return true;
        return e.event && e.event.value.includes(Buffer.from(containerId));
      })
      .map((e) => e.topic);
  }

  /** Pids of serving shims and monitors started under this harness's root. */
  ourProcesses(): { pid: number; kind: "shim" | "monitor" }[] {
    const out: { pid: number; kind: "shim" | "monitor" }[] = [];
    for (const name of readdirSync("/proc")) {
      if (!/^\d+$/.test(name)) continue;
      let cmd: string;
      try {
        cmd = readFileSync(`/proc/${name}/cmdline`, "utf8");
      } catch {
        continue;
      }
      if (!cmd.includes(this.socketDir)) continue;
      if (cmd.includes("berth-monitor")) out.push({ pid: Number(name), kind: "monitor" });
      else if (cmd.includes("-berth-serve")) out.push({ pid: Number(name), kind: "shim" });
    }
    return out;
  }

  async cleanup(): Promise<void> {
    for (const c of this.clients) c.close();
    for (const p of this.ourProcesses()) {
      try {
        process.kill(p.pid, "SIGKILL");
      } catch {
        // gone
      }
    }
    for (const root of [this.runcRoot, ...extraRuntimeRoots(this.root)]) {
      let ids: string[] = [];
      try {
        ids = execFileSync("runc", ["--root", root, "list", "-q"], { encoding: "utf8" }).split("\n").filter(Boolean);
      } catch {
        // no such root
      }
      for (const id of ids) spawnSync("runc", ["--root", root, "delete", "--force", id]);
    }
    // mounts the tests made (rootfs mounts) anywhere under the root
    const mounts = readFileSync("/proc/self/mountinfo", "utf8")
      .split("\n")
      .map((l) => l.split(" ")[4])
      .filter((m): m is string => !!m && m.startsWith(this.root))
      .sort((a, b) => b.length - a.length);
    for (const m of mounts) spawnSync("umount", ["-l", m]);
    await this.server?.close({ timeoutMs: 100 });
    rmSync(this.root, { recursive: true, force: true });
  }
}

function extraRuntimeRoots(root: string): string[] {
  try {
    return readdirSync(root)
      .filter((n) => n.startsWith("runtime-"))
      .map((n) => join(root, n));
  } catch {
    return [];
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls until fn returns a truthy value (tests assert behaviour, not timing). */
export async function until<T>(fn: () => T | Promise<T>, what: string, timeoutMs = 15000): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return !stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z");
  } catch {
    return false;
  }
}

/** A fifo like containerd's: we hold the read end and collect everything written. */
export function fifoReader(path: string): Promise<string> {
  execFileSync("mkfifo", [path]);
  return new Promise((resolve, reject) => {
    let text = "";
    const s = createReadStream(path, { encoding: "utf8" });
    s.on("data", (d) => (text += d));
    s.on("end", () => resolve(text));
    s.on("error", reject);
  });
}
