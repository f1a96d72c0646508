// containerd's runc shim (Go ttrpc) started as containerd starts it, for the wire-compatibility tests,
// and a few hand-rolled protobuf helpers to check its messages without its generated types.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { mkdtemp, rm, rmdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import assert from "node:assert/strict";

export const shimBinary = ["/usr/bin/containerd-shim-runc-v2", "/usr/local/bin/containerd-shim-runc-v2"].find((p) =>
  existsSync(p),
);
export const haveRunc = spawnSync("runc", ["--version"]).status === 0 && existsSync("/usr/bin/busybox");
export const TASK = "containerd.task.v2.Task";

/** A started runc shim in its own temp dir, and everything needed to clean it up. */
export class ShimHarness {
  readonly ns = `berth-ttrpc-test-${process.pid}`;
  readonly id = `t${Date.now()}`;
  address = "";
  shimPid = 0;
  log = "";
  private logReader: ChildProcess | undefined;
  private constructor(
    readonly work: string,
    readonly bundle: string,
  ) {}

  static async create(withRootfs: boolean): Promise<ShimHarness> {
    const work = await mkdtemp(join(tmpdir(), "berth-ttrpc-shim-"));
    const h = new ShimHarness(work, join(work, "bundle"));
    mkdirSync(h.bundle);
    if (withRootfs) {
      mkdirSync(join(h.bundle, "rootfs", "bin"), { recursive: true });
      copyFileSync("/usr/bin/busybox", join(h.bundle, "rootfs", "bin", "busybox"));
      assert.equal(spawnSync("runc", ["spec"], { cwd: h.bundle }).status, 0);
      const spec = JSON.parse(readFileSync(join(h.bundle, "config.json"), "utf8")) as {
        process: { terminal: boolean; args: string[] };
      };
      spec.process.terminal = false;
      spec.process.args = ["/bin/busybox", "sleep", "30"];
      writeFileSync(join(h.bundle, "config.json"), JSON.stringify(spec));
    } else {
      writeFileSync(join(h.bundle, "config.json"), JSON.stringify({ ociVersion: "1.0.2", annotations: {} }));
    }
    // The shim writes its log to a fifo named "log" in the bundle; somebody must read it.
    assert.equal(spawnSync("mkfifo", [join(h.bundle, "log")]).status, 0);
    h.logReader = spawn("cat", [join(h.bundle, "log")], { stdio: ["ignore", "pipe", "ignore"] });
    h.logReader.stdout!.on("data", (c: Buffer) => (h.log += c.toString()));
    return h;
  }

  get ttrpcAddress(): string {
    return join(this.work, "ttrpc.sock");
  }

  /** `containerd-shim-runc-v2 start` as containerd runs it; returns the printed address. */
  start(): string {
    const res = spawnSync(
      shimBinary!,
      [
        "-namespace",
        this.ns,
        "-address",
        join(this.work, "containerd.sock"),
        "-publish-binary",
        "/bin/true",
        "-id",
        this.id,
        "start",
      ],
      {
        cwd: this.bundle,
        env: { ...process.env, TTRPC_ADDRESS: this.ttrpcAddress },
        encoding: "utf8",
        timeout: 20_000,
      },
    );
    assert.equal(res.status, 0, `shim start failed: ${res.stderr}`);
    this.address = res.stdout.trim();
    assert.match(this.address, /^unix:\/\/\//);
    return this.address;
  }

  async cleanup(): Promise<void> {
    if (this.shimPid > 0 && processAlive(this.shimPid)) {
      await waitFor(() => !processAlive(this.shimPid), 5000);
      if (processAlive(this.shimPid)) process.kill(this.shimPid, "SIGKILL");
    }
    this.logReader?.kill();
    if (this.address) await rm(this.address.replace(/^unix:\/\//, ""), { force: true });
    // The shim keeps runc state under /run/containerd/runc/<namespace>; empty after Delete.
    await rmdir(join("/run/containerd/runc", this.ns)).catch(() => {});
    await rm(this.work, { recursive: true, force: true });
  }
}

export const rawCodec = {
  encode: (b: Buffer) => ({ finish: () => b }),
  decode: (b: Uint8Array) => Buffer.from(b),
};

export function fieldString(field: number, value: string): Buffer {
  const v = Buffer.from(value);
  assert.ok(v.length < 128);
  return Buffer.concat([Buffer.from([(field << 3) | 2, v.length]), v]);
}

/** Reads the first occurrence of a varint or length-delimited field (enough for small hand-checked messages). */
export function readField(buf: Buffer, field: number): number | Buffer | undefined {
  let pos = 0;
  const varint = () => {
    let result = 0;
    let shift = 0;
    for (;;) {
      const b = buf[pos++]!;
      result += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return result;
      shift += 7;
    }
  };
  while (pos < buf.length) {
    const tag = varint();
    const wire = tag % 8;
    const num = Math.floor(tag / 8);
    if (wire === 0) {
      const v = varint();
      if (num === field) return v;
    } else if (wire === 2) {
      const len = varint();
      if (num === field) return buf.subarray(pos, pos + len);
      pos += len;
    } else throw new Error(`unexpected wire type ${wire}`);
  }
  return undefined;
}

/** Alive and not a zombie (a reparented shim may linger as one when nothing reaps it). */
export function processAlive(pid: number): boolean {
  try {
    const st = readFileSync(`/proc/${pid}/stat`, "utf8");
    return !/^\d+ \(.*\) Z/.test(st);
  } catch {
    return false;
  }
}

export async function waitFor(cond: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
}
