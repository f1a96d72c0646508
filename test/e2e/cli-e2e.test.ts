// The berth CLI end to end: a private berthd with real runc, CNI and a local registry
// (test/helpers/cri.ts), driven by spawning bin/berth the way a user types it, and through a
// pseudo-terminal (test/helpers/pty.ts) where a terminal changes what berth does.
/* eslint-disable no-control-regex -- terminal output is matched for its escape sequences */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { status as grpcStatus } from "@grpc/grpc-js";
import { berth, BERTH } from "../helpers/cli.js";
import { until, type CriEnv } from "../helpers/cri.js";
import { useCriEnv } from "../helpers/cri-fixture.js";
import { runInPty } from "../helpers/pty.js";

let env: CriEnv;
let addr: { BERTH_ADDRESS: string };

useCriEnv({ bridge: "berthcli0", subnet: "10.237.0.0/24", pull: [] }, (e) => {
  env = e;
  addr = { BERTH_ADDRESS: e.d.socket };
});

const b = (args: string[], opts: { input?: string | Buffer } = {}) => berth(args, { env: addr, ...opts });

/** Whether this berthd serves a streaming RPC yet (Exec/Attach land with the streaming server). */
async function serves(method: "exec" | "attach"): Promise<boolean> {
  try {
    await env.d.rt[method]({ containerId: "probe-nonexistent", cmd: ["true"], stdout: true } as never);
    return true;
  } catch (err) {
    return (err as { code?: number }).code !== grpcStatus.UNIMPLEMENTED;
  }
}

async function podNames(): Promise<string[]> {
  return (await env.d.rt.listPodSandbox({})).items.map((p) => p.metadata?.name ?? "");
}

describe("images", () => {
  test("pull draws live per-layer bars with a total on a terminal", async () => {
    const p = runInPty([process.execPath, BERTH, "pull", env.images.busybox], {
      env: { ...process.env, ...addr },
      cols: 120,
    });
    const r = await p.exited;
    assert.equal(r.code, 0, r.output);
    assert.match(r.output, /Pulling 127\.0\.0\.1:\d+\/test\/busybox:1/);
    assert.match(r.output, /Total: +\[=+\] [\d.]+[kM]?B\/[\d.]+[kM]?B/, "a total bar with bytes");
    assert.match(
      r.output,
      /[0-9a-f]{12}: (Downloading +\[[=> ]+\]|Download complete|Pull complete)/,
      "a line per layer",
    );
    assert.match(r.output, /\x1b\[\d*[AG]/, "redrawn in place");
    assert.match(r.output, /Pulled 127\.0\.0\.1:\d+\/test\/busybox:1/);
  });

  test("pull prints plain lines when piped, and -q only the id", async () => {
    const r = await b(["pull", env.images.busyboxUser]);
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stdout, /\x1b/);
    assert.match(r.stdout, /^[0-9a-f]{12}: resolved$/m);
    assert.match(r.stdout, /^[0-9a-f]{12}: downloading \d+(\.\d+)?[kM]?B$/m);
    assert.match(r.stdout, /^Pulled 127\.0\.0\.1:\d+\/test\/busybox-user:1$/m);
    const q = await b(["pull", "-q", env.images.busyboxUser]);
    assert.match(q.stdout, /^sha256:[0-9a-f]{64}\n$/);
  });

  test("images lists tags in a table, ids with -q, objects with -o", async () => {
    const r = await b(["images"]);
    assert.match(r.stdout, /^REPOSITORY +TAG +IMAGE ID +SIZE$/m);
    assert.match(r.stdout, /^127\.0\.0\.1:\d+\/test\/busybox +1 +[0-9a-f]{12} +[\d.]+MB$/m);
    const ids = (await b(["images", "-q"])).stdout.trim().split("\n");
    assert.equal(ids.length, 2);
    for (const id of ids) assert.match(id, /^[0-9a-f]{12}$/);
    const json = JSON.parse((await b(["images", "-o", "json"])).stdout) as { repoTags: string[] }[];
    assert.ok(json.some((i) => i.repoTags.includes(env.images.busybox)));
    assert.match((await b(["images", "-o", "yaml"])).stdout, /^- id: sha256:/m);
  });

  test("save, rmi, load and import round-trip images through archives", async () => {
    const dir = mkdtempSync(join(tmpdir(), "berth-cli-"));
    try {
      const tar = join(dir, "bb.tar");
      const saved = await b(["save", "-o", tar, env.images.busyboxUser]);
      assert.equal(saved.code, 0, saved.stderr);
      const rmi = await b(["rmi", env.images.busyboxUser]);
      assert.equal(rmi.code, 0, rmi.stderr);
      assert.doesNotMatch((await b(["images"])).stdout, /busybox-user/);
      const loaded = await b(["load", "-i", tar]);
      assert.equal(loaded.code, 0, loaded.stderr);
      assert.equal(loaded.stdout, `Loaded image: ${env.images.busyboxUser}\n`);
      // docker import: a plain rootfs tarball becomes a one-layer image with the given CMD.
      const rootfs = join(dir, "rootfs.tar");
      const tarball = spawn("tar", ["-C", "/usr/bin", "-cf", rootfs, "busybox"]);
      await new Promise((r) => tarball.once("close", r));
      const imp = await b(["import", "-c", 'CMD ["/busybox", "echo", "imported"]', rootfs, "cli-import:1"]);
      assert.equal(imp.code, 0, imp.stderr);
      assert.match(imp.stdout, /^sha256:[0-9a-f]{64}\n$/);
      const run = await b(["run", "--rm", "cli-import:1"]);
      assert.equal(run.code, 0, run.stderr);
      assert.equal(run.stdout, "imported\n");
      assert.equal((await b(["rmi", "cli-import:1"])).code, 0);
      const refuse = await b(["save", env.images.busybox]);
      assert.equal(refuse.code, 0, "stdout is a pipe here, so save writes the archive to it");
      assert.ok(refuse.stdout.length > 1000);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("containers", () => {
  test("run --rm exits with the container's code, streams both outputs, and leaves no pod", async () => {
    const before = await podNames();
    const r = await b(["run", "--rm", env.images.busybox, "sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert.equal(r.code, 3, r.stderr);
    assert.equal(r.stdout, "out\n");
    assert.equal(r.stderr, "err\n");
    assert.deepEqual(await podNames(), before);
    const logs = join(env.d.root, "pod-logs");
    assert.deepEqual(existsSync(logs) ? readdirSync(logs) : [], [], "the log directory went with the pod");
  });

  test("run maps docker's exit codes: 127 for a missing command, 125 for a taken name", async () => {
    const missing = await b(["run", "--rm", env.images.busybox, "/no/such/program"]);
    assert.equal(missing.code, 127, missing.stderr);
    assert.match(missing.stderr, /failed to start/);
    assert.deepEqual(await podNames(), []);
    const first = await b(["run", "-d", "--name", "taken", env.images.busybox, "sleep", "30"]);
    assert.equal(first.code, 0, first.stderr);
    const second = await b(["run", "--name", "taken", env.images.busybox, "true"]);
    assert.equal(second.code, 125);
    assert.match(second.stderr, /the name taken is already in use.*\n.*berth rm -f taken/);
    assert.equal((await b(["rm", "-f", "taken"])).code, 0);
    assert.deepEqual(await podNames(), []);
  });

  test("a detached container: ps, logs, exec, inspect, stats, stop and rm", async () => {
    const run = await b([
      "run",
      "-d",
      "--name",
      "web",
      "-e",
      "GREETING=hello",
      env.images.busybox,
      "sh",
      "-c",
      'i=0; while true; do echo "$GREETING $i"; i=$((i+1)); sleep 0.2; done',
    ]);
    assert.equal(run.code, 0, run.stderr);
    const id = run.stdout.trim();
    assert.match(id, /^[0-9a-f]{64}$/);

    const ps = await b(["ps"]);
    assert.match(
      ps.stdout,
      new RegExp(`^${id.slice(0, 12)} +127\\.0\\.0\\.1:\\d+/test/busybox:1 +.+ago +Up .+ +web +[0-9a-f]{12}$`, "m"),
    );
    assert.equal((await b(["ps", "-q"])).stdout, `${id.slice(0, 12)}\n`);
    assert.match((await b(["pods"])).stdout, /^[0-9a-f]{12} +.+ago +ready +web +berth +runc$/m);

    await until(async () => /hello 3/.test((await b(["logs", "web"])).stdout), "four log lines");
    const tail = await b(["logs", "--tail", "2", "-t", id.slice(0, 8)]);
    const lines = tail.stdout.trim().split("\n");
    assert.equal(lines.length, 2);
    for (const l of lines) assert.match(l, /^\d{4}-\d\d-\d\dT[\d:.]+Z hello \d+$/);
    assert.equal((await b(["logs", "--since", "1h", "web"])).stdout.split("\n")[0], "hello 0");
    assert.equal((await b(["logs", "--since", "2999-01-01T00:00:00Z", "web"])).stdout, "");

    const exec = await b(["exec", "web", "sh", "-c", "echo $GREETING from exec; exit 5"]);
    assert.equal(exec.code, 5);
    assert.equal(exec.stdout, "hello from exec\n");

    const inspect = JSON.parse((await b(["inspect", "web"])).stdout) as {
      type: string;
      status: { state: string; logPath: string };
    }[];
    assert.equal(inspect[0].type, "container");
    assert.equal(inspect[0].status.state, "CONTAINER_RUNNING");
    assert.ok(existsSync(inspect[0].status.logPath));
    assert.match((await b(["inspect", "--type", "pod", "web", "-o", "yaml"])).stdout, /type: pod\n {2}status:\n/);

    const stats = await b(["stats", "--no-stream"]);
    assert.equal(stats.code, 0, stats.stderr);
    assert.match(stats.stdout, new RegExp(`^${id.slice(0, 12)} +web +[\\d.]+% +[\\d.]+[KM]iB`, "m"));

    const running = await b(["rm", "web"]);
    assert.equal(running.code, 1);
    assert.match(running.stderr, /is running\n {2}hint: stop it first/);
    const stop = await b(["stop", "-t", "1", "web"]);
    assert.equal(stop.code, 0, stop.stderr);
    assert.match((await b(["ps", "-a"])).stdout, /Exited \(137\)/);
    assert.equal((await b(["logs", "-f", "web"])).code, 0, "follow ends at once for a stopped container");
    assert.equal((await b(["rm", "web"])).code, 0);
    assert.equal((await b(["ps", "-aq"])).stdout, "");
    assert.deepEqual(await podNames(), []);
  });

  test("logs -f follows until the container exits; events reports the lifecycle", async () => {
    const events = spawn(process.execPath, [BERTH, "events"], { env: { ...process.env, ...addr } });
    let evOut = "";
    events.stdout.on("data", (d: Buffer) => (evOut += d.toString()));
    try {
      await new Promise((r) => setTimeout(r, 500));
      const run = await b([
        "run",
        "-d",
        "--name",
        "counter",
        env.images.busybox,
        "sh",
        "-c",
        "for i in 1 2 3; do echo n$i; sleep 0.3; done; exit 4",
      ]);
      assert.equal(run.code, 0, run.stderr);
      const f = await b(["logs", "-f", "counter"]);
      assert.equal(f.stdout, "n1\nn2\nn3\n");
      await until(() => /container stopped [0-9a-f]{12} name=counter .*exitCode=4/.test(evOut), "stopped event");
      assert.match(evOut, /container created [0-9a-f]{12}/);
      assert.match(evOut, /container started [0-9a-f]{12}/);
      assert.equal((await b(["rm", "counter"])).code, 0);
    } finally {
      events.kill("SIGINT");
    }
  });

  test("run -it gives a terminal; Ctrl-C goes into it; exit code comes back", async (t) => {
    if (!(await serves("attach"))) return t.skip("this berthd does not serve Attach yet (streaming server)");
    const p = runInPty([process.execPath, BERTH, "run", "-it", "--rm", env.images.busybox, "sh"], {
      env: { ...process.env, ...addr },
    });
    await new Promise((r) => setTimeout(r, 1500));
    p.write("tty; echo tty-ok\r");
    await p.waitFor(/\/dev\/pts\/\d+\r*\ntty-ok/);
    p.write("sleep 30\r");
    await new Promise((r) => setTimeout(r, 500));
    p.write("\x03"); // ^C interrupts sleep inside the container; the shell lives on
    p.write("echo after-ctrl-c\r");
    await p.waitFor(/\r*\nafter-ctrl-c\r*\n/);
    p.write("exit 6\r");
    const r = await p.exited;
    assert.equal(r.code, 6, r.output);
    assert.deepEqual(await podNames(), []);
  });

  test("exec -it runs an interactive shell in a running container", async (t) => {
    if (!(await serves("exec"))) return t.skip("this berthd does not serve Exec yet (streaming server)");
    const run = await b(["run", "-d", "--name", "shellhost", env.images.busybox, "sleep", "60"]);
    assert.equal(run.code, 0, run.stderr);
    try {
      const p = runInPty([process.execPath, BERTH, "exec", "-it", "shellhost", "sh"], {
        env: { ...process.env, ...addr },
      });
      p.write("stty size; echo exec-ok\r");
      await p.waitFor(/30 100\r*\nexec-ok/);
      p.write("exit 9\r");
      assert.equal((await p.exited).code, 9);
      const piped = await b(["exec", "-i", "shellhost", "cat"], { input: "through stdin\n" });
      assert.equal(piped.stdout, "through stdin\n");
    } finally {
      await b(["rm", "-f", "shellhost"]);
    }
  });

  test("run -it fails cleanly (125, nothing left) when the daemon cannot attach", async (t) => {
    if (await serves("attach")) return t.skip("Attach is served: covered by the run -it test");
    const p = runInPty([process.execPath, BERTH, "run", "-it", "--rm", env.images.busybox, "sh"], {
      env: { ...process.env, ...addr },
    });
    const r = await p.exited;
    assert.equal(r.code, 125);
    assert.match(r.output, /Attach is not implemented/);
    assert.deepEqual(await podNames(), []);
  });
});
