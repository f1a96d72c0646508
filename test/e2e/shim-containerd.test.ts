// containerd uses berth's shim, for both generations of containerd: Debian's containerd 1.6
// and containerd 2.4 (built from the module proxy, test/go/containerd-2.4), each with its own
// private root, state, sockets and config, runs busybox containers through `--runtime
// io.containerd.berth.v2`, finding containerd-shim-berth-v2 on PATH. Exercises the shim's
// command protocol (start, delete; containerd 2.4 sends the bootstrap protocol of 2.3+ on
// start), the Task API as containerd calls it, and event publishing to containerd.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

import { makeRootfs } from "../helpers/bundle.js";
import { goTool } from "../helpers/go-tools.js";
import { REPO, alive, ensureMonitor, sleep, until } from "../helpers/shim.js";

const NS = "test";
const IMAGE = "docker.io/library/berth-busybox:latest";
const RUNTIME = "io.containerd.berth.v2";

/** One generation of containerd: its binaries, and the config of a private instance. */
interface Generation {
  name: string;
  binaries(): { containerd: string; ctr: string };
  config(tmp: string, sock: string): string;
}

/** Waits up to `ms` for `child` to exit; says whether it did. */
function exited(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    child.once("exit", () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

const generations: Generation[] = [
  {
    name: "containerd 1.6 (Debian)",
    binaries: () => ({ containerd: "containerd", ctr: "ctr" }),
    config: (tmp, sock) =>
      [
        "version = 2",
        `root = "${tmp}/root"`,
        `state = "${tmp}/state"`,
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
        "[grpc]",
        `  address = "${sock}"`,
        "[ttrpc]",
        `  address = "${sock}.ttrpc"`,
        "[debug]",
        '  level = "info"',
        '[plugins."io.containerd.internal.v1.opt"]',
        `  path = "${tmp}/opt"`,
      ].join("\n"),
  },
  {
    name: "containerd 2.4",
    binaries: () => ({ containerd: goTool("containerd-2.4", "containerd"), ctr: goTool("containerd-2.4", "ctr") }),
    // Config version 4, containerd 2.4's own (version 3 still loads, migrated with a warning):
    // the servers are plugins. No default imports from /etc/containerd/conf.d, no NRI socket
    // in /var/run/nri, and the shims' sockets in our dir instead of /run/containerd/s (at
    // most 42 characters; shims get it as BootstrapParams.socket_dir). No CRI in this build.
    config: (tmp, sock) =>
      [
        "version = 4",
        `root = "${tmp}/root"`,
        `state = "${tmp}/state"`,
        "imports = []",
        'disabled_plugins = ["io.containerd.nri.v1.nri"]',
        "[debug]",
        '  level = "info"',
        "[plugins.'io.containerd.server.v1.grpc']",
        `  address = "${sock}"`,
        "[plugins.'io.containerd.server.v1.ttrpc']",
        `  address = "${sock}.ttrpc"`,
        "[plugins.'io.containerd.internal.v1.opt']",
        `  path = "${tmp}/opt"`,
        "[plugins.'io.containerd.shim.v1.manager']",
        `  socket_dir = "${tmp}/s"`,
      ].join("\n"),
  },
];

function sha256(b: Buffer): string {
  return createHash("sha256").update(b).digest("hex");
}

/** An OCI image archive of busybox-static, named through containerd's annotation. */
function buildImage(dir: string): string {
  const rootfs = join(dir, "img-rootfs");
  makeRootfs(rootfs);
  const layer = execFileSync("tar", ["-C", rootfs, "--numeric-owner", "-cf", "-", "."], { maxBuffer: 64 << 20 });
  const layout = join(dir, "layout");
  mkdirSync(join(layout, "blobs/sha256"), { recursive: true });
  const blob = (b: Buffer) => {
    const d = sha256(b);
    writeFileSync(join(layout, "blobs/sha256", d), b);
    return { digest: `sha256:${d}`, size: b.length };
  };
  const l = blob(layer);
  const config = blob(
    Buffer.from(
      JSON.stringify({
        architecture: "amd64",
        os: "linux",
        config: { Env: ["PATH=/bin"], Cmd: ["sh"] },
        rootfs: { type: "layers", diff_ids: [l.digest] },
      }),
    ),
  );
  const manifest = blob(
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        config: { mediaType: "application/vnd.oci.image.config.v1+json", ...config },
        layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar", ...l }],
      }),
    ),
  );
  writeFileSync(join(layout, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  writeFileSync(
    join(layout, "index.json"),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: "application/vnd.oci.image.manifest.v1+json",
          ...manifest,
          platform: { architecture: "amd64", os: "linux" },
          annotations: { "io.containerd.image.name": IMAGE, "org.opencontainers.image.ref.name": "latest" },
        },
      ],
    }),
  );
  const archive = join(dir, "image.tar");
  execFileSync("tar", ["-C", layout, "-cf", archive, "."]);
  return archive;
}

for (const gen of generations) describe(gen.name, () => suite(gen));

/** The same scenarios against one generation's private containerd. */
function suite(gen: Generation): void {
  let tmp: string;
  let sock: string;
  let ctrBin: string;
  let containerd: ChildProcess;
  let env: NodeJS.ProcessEnv;
  let containerdLogTail = () => "";

  function ctr(args: string[], opts: { input?: string; cleanup?: boolean } = {}) {
    const r = spawnSync(ctrBin, ["-a", sock, "-n", NS, ...args], {
      env,
      encoding: "utf8",
      input: opts.input,
      timeout: 60_000,
      // ctr forwards SIGTERM to its task or ignores it while a call is pending; SIGKILL makes
      // the timeout real, so one stuck call fails its test instead of blocking the file
      killSignal: "SIGKILL",
    });
    if (r.error && !opts.cleanup)
      throw new Error(`ctr ${args.join(" ")}: ${r.error.message}; containerd log:\n${containerdLogTail()}`);
    return { code: r.status, out: r.stdout, err: r.stderr };
  }

  function ctrOk(args: string[]): string {
    const r = ctr(args);
    assert.equal(r.code, 0, `ctr ${args.join(" ")}: ${r.err}`);
    return r.out;
  }

  before(async () => {
    ensureMonitor();
    const bins = gen.binaries(); // containerd 2.4 is built here first when its cache is cold
    ctrBin = bins.ctr;
    tmp = mkdtempSync("/tmp/berth-ctrd-");
    sock = join(tmp, "containerd.sock");
    writeFileSync(join(tmp, "config.toml"), gen.config(tmp, sock));
    env = {
      ...process.env,
      PATH: `${join(REPO, "bin")}:${process.env.PATH}`,
      BERTH_SHIM_SOCKET_DIR: join(tmp, "shim"),
      BERTH_SHIM_RUNTIME_ROOT: join(tmp, "runtime"),
    };
    containerd = spawn(bins.containerd, ["--config", join(tmp, "config.toml")], {
      env,
      stdio: ["ignore", "ignore", "pipe"],
    });
    let log = "";
    containerd.stderr!.on("data", (d: Buffer) => (log += d.toString()));
    containerdLogTail = () => log.split("\n").slice(-30).join("\n");
    await until(() => ctr(["version"]).code === 0, "containerd to serve", 30_000);
    const archive = buildImage(tmp);
    ctrOk(["images", "import", "--snapshotter", "overlayfs", archive]);
    assert.match(ctrOk(["images", "ls", "-q"]), /berth-busybox/);
  });

  after(async () => {
    if (!tmp) return;
    // containers first (the shim exits when its last task is gone), then containerd
    for (const id of (ctr(["task", "ls", "-q"], { cleanup: true }).out ?? "").split("\n").filter(Boolean)) {
      ctr(["task", "kill", "-s", "SIGKILL", id], { cleanup: true });
    }
    await sleep(300);
    for (const id of (ctr(["containers", "ls", "-q"], { cleanup: true }).out ?? "").split("\n").filter(Boolean)) {
      ctr(["task", "delete", "-f", id], { cleanup: true });
      ctr(["containers", "rm", id], { cleanup: true });
    }
    if (containerd && containerd.exitCode === null && containerd.signalCode === null) {
      containerd.kill("SIGTERM");
      if (!(await exited(containerd, 15_000))) containerd.kill("SIGKILL");
    }
    // anything of ours still alive (shim, monitors): by pid, found through our tmp path
    for (const name of readdirSync("/proc").filter((n) => /^\d+$/.test(n))) {
      let cmd = "";
      try {
        cmd = readFileSync(`/proc/${name}/cmdline`, "utf8");
      } catch {
        continue;
      }
      if (cmd.includes(tmp)) {
        try {
          process.kill(Number(name), "SIGKILL");
        } catch {
          // gone
        }
      }
    }
    for (const m of readFileSync("/proc/self/mountinfo", "utf8")
      .split("\n")
      .map((l) => l.split(" ")[4])
      .filter((m): m is string => !!m && m.startsWith(tmp))
      .sort((a, b) => b.length - a.length)) {
      spawnSync("umount", ["-l", m]);
    }
    rmSync(tmp, { recursive: true, force: true });
  });

  function shimPids(): number[] {
    return readdirSync("/proc")
      .filter((n) => /^\d+$/.test(n))
      .filter((n) => {
        try {
          const c = readFileSync(`/proc/${n}/cmdline`, "utf8");
          return c.includes("-berth-serve") && c.includes(tmp);
        } catch {
          return false;
        }
      })
      .map(Number);
  }

  test("ctr run --runtime io.containerd.berth.v2 runs to completion with the right output and exit code", () => {
    const r = ctr([
      "run",
      "--rm",
      "--runtime",
      RUNTIME,
      IMAGE,
      "run1",
      "sh",
      "-c",
      "echo hello from berth; echo to-stderr >&2; exit 3",
    ]);
    assert.equal(r.code, 3, r.err);
    assert.equal(r.out, "hello from berth\n");
    assert.match(r.err, /to-stderr/);
    assert.equal(ctr(["containers", "ls", "-q"]).out.trim(), "");
  });

  test("ctr run -i pipes stdin through the shim", () => {
    const i = spawnSync(ctrBin, ["-a", sock, "-n", NS, "run", "--rm", "--runtime", RUNTIME, IMAGE, "stdin2", "cat"], {
      env,
      input: "piped through\n",
      encoding: "utf8",
      timeout: 30_000,
    });
    assert.equal(i.status, 0, i.stderr);
    assert.equal(i.stdout, "piped through\n");
  });

  test("exec, ps, pause/resume, metrics, kill and delete through ctr; a signal death reports 128+signal", async () => {
    ctrOk(["run", "-d", "--runtime", RUNTIME, IMAGE, "long1", "sleep", "1000"]);
    ctrOk(["run", "-d", "--runtime", RUNTIME, IMAGE, "long2", "sleep", "1000"]);
    // both tasks of this containerd namespace share one shim process
    assert.equal(shimPids().length, 1);

    const ex = ctr(["task", "exec", "--exec-id", "e1", "long1", "sh", "-c", "echo from exec; exit 2"]);
    assert.equal(ex.code, 2, ex.err);
    assert.equal(ex.out, "from exec\n");

    const ps = ctrOk(["task", "ps", "long1"]);
    assert.match(ps, /PID\s+INFO/);
    const pids = ps.split("\n").slice(1).filter(Boolean);
    assert.equal(pids.length, 1);

    ctrOk(["task", "pause", "long1"]);
    assert.match(ctrOk(["task", "ls"]), /long1\s+\d+\s+PAUSED/);
    ctrOk(["task", "resume", "long1"]);
    assert.match(ctrOk(["task", "ls"]), /long1\s+\d+\s+RUNNING/);

    const metrics = ctrOk(["task", "metrics", "long1"]);
    assert.match(metrics, /memory\.usage_in_bytes\s+\d+/);
    assert.match(metrics, /pids\.current\s+1/);

    ctrOk(["task", "kill", "-s", "SIGKILL", "long1"]);
    await until(() => /long1\s+\d+\s+STOPPED/.test(ctrOk(["task", "ls"])), "long1 to stop");
    ctrOk(["task", "delete", "long1"]);
    ctrOk(["containers", "rm", "long1"]);

    // `ctr run` (attached) returns the task's exit status: SIGKILL -> 137
    const run = spawn(
      ctrBin,
      ["-a", sock, "-n", NS, "run", "--rm", "--runtime", RUNTIME, IMAGE, "sig1", "sleep", "1000"],
      { env, stdio: "ignore" },
    );
    await until(() => /sig1\s+\d+\s+RUNNING/.test(ctrOk(["task", "ls"])), "sig1 to run");
    ctrOk(["task", "kill", "-s", "SIGKILL", "sig1"]);
    assert.ok(await exited(run, 30_000), "the attached `ctr run` of sig1 ends after its task is killed");
    assert.equal(run.exitCode, 137);

    ctrOk(["task", "kill", "-s", "SIGKILL", "long2"]);
    await until(() => /long2\s+\d+\s+STOPPED/.test(ctrOk(["task", "ls"])), "long2 to stop");
    ctrOk(["task", "delete", "long2"]);
    ctrOk(["containers", "rm", "long2"]);
    // the last task is gone: containerd's Shutdown ends the shared shim
    await until(() => shimPids().length === 0, "the shim to exit");
  });

  test("containerd receives the shim's events", async () => {
    const events = spawn(ctrBin, ["-a", sock, "events"], { env, stdio: ["ignore", "pipe", "ignore"] });
    let out = "";
    events.stdout!.on("data", (d: Buffer) => (out += d.toString()));
    await sleep(300);
    const r = ctr(["run", "--rm", "--runtime", RUNTIME, IMAGE, "ev1", "true"]);
    assert.equal(r.code, 0, r.err);
    await until(() => out.includes("/tasks/delete"), "the delete event");
    events.kill();
    const topics = out
      .split("\n")
      .filter((l) => l.includes("ev1"))
      .map((l) => /\/tasks\/[a-z-]+/.exec(l)?.[0])
      .filter(Boolean);
    assert.deepEqual(topics, ["/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"]);
    assert.ok(alive(process.pid));
  });
}
