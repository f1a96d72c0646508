// The berth CLI as a user runs it: spawned, reading stdout, stderr and the exit code. These
// cases need no pods: help, versions, usage errors, the daemon-not-running message,
// completion scripts and colours. test/e2e/cli-e2e.test.ts drives pods, images and terminals.
/* eslint-disable no-control-regex -- terminal output is matched for its escape sequences */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { REPO_ROOT, startDaemon, type TestDaemon } from "../helpers/daemon.js";
import { berth, BERTH } from "../helpers/cli.js";
import { runInPty } from "../helpers/pty.js";

const NO_DAEMON = "/nonexistent/berth-test/berth.sock";

describe("berth without a daemon", () => {
  test("every command's --help runs and shows examples", async () => {
    const top = await berth(["--help"]);
    assert.equal(top.code, 0);
    const section = top.stdout.slice(top.stdout.indexOf("Commands:"), top.stdout.indexOf("Examples:"));
    const commands = [...section.matchAll(/^ {2}([a-z][a-z-]*)/gm)].map((m) => m[1]).filter((c) => c !== "help");
    for (const expected of [
      "pull",
      "images",
      "rmi",
      "run",
      "ps",
      "pods",
      "exec",
      "logs",
      "stop",
      "rm",
      "inspect",
      "stats",
      "load",
      "save",
      "import",
      "info",
      "version",
      "events",
      "completion",
    ]) {
      assert.ok(commands.includes(expected), `berth --help lists ${expected}`);
    }
    for (const cmd of commands) {
      const r = await berth([cmd, "--help"], { env: { BERTH_ADDRESS: NO_DAEMON } });
      assert.equal(r.code, 0, `${cmd} --help: ${r.stderr}`);
      assert.match(r.stdout, new RegExp(`^Usage: berth ${cmd}`, "m"));
      assert.match(r.stdout, /Examples:\n {2}(source <\()?berth /, `${cmd} --help has examples`);
    }
  });

  test("--version prints the client version", async () => {
    const r = await berth(["--version"]);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /^\d+\.\d+\.\d+/);
  });

  test("a daemon that is not running is named, with the command that starts it", async () => {
    for (const args of [["-a", NO_DAEMON, "ps"], ["ps"]]) {
      const r = await berth(args, { env: { BERTH_ADDRESS: NO_DAEMON } });
      assert.equal(r.code, 1);
      assert.equal(r.stdout, "");
      assert.match(r.stderr, new RegExp(`no socket at ${NO_DAEMON}`));
      assert.match(r.stderr, /berthd/);
      assert.match(r.stderr, /bash scripts\/setup\.sh/);
      assert.doesNotMatch(r.stderr, /at .*\.js:\d+/, "no stack trace");
    }
    // version still prints the client half, then fails.
    const v = await berth(["version"], { env: { BERTH_ADDRESS: NO_DAEMON } });
    assert.equal(v.code, 1);
    assert.match(v.stdout, /Client:\n Version: +\d/);
    assert.match(v.stderr, /no socket at/);
    // run: berth's own failures are 125, as docker's.
    const run = await berth(["run", "--rm", "busybox", "true"], { env: { BERTH_ADDRESS: NO_DAEMON } });
    assert.equal(run.code, 125);
    assert.match(run.stderr, /no socket at/);
  });

  test("usage errors exit 2 (125 for run) before contacting the daemon", async () => {
    const env = { BERTH_ADDRESS: NO_DAEMON };
    const bogus = await berth(["ps", "--bogus"], { env });
    assert.equal(bogus.code, 2);
    assert.match(bogus.stderr, /unknown option '--bogus'/);
    assert.equal((await berth(["frobnicate"], { env })).code, 2);
    const noImage = await berth(["run"], { env });
    assert.equal(noImage.code, 125);
    assert.match(noImage.stderr, /missing required argument 'image'/);
    const badPort = await berth(["run", "-p", "eighty", "busybox"], { env });
    assert.equal(badPort.code, 125);
    assert.match(badPort.stderr, /-p eighty: expected HOST_PORT:CONTAINER_PORT/);
    const badVol = await berth(["run", "-v", "data:/data", "busybox"], { env });
    assert.equal(badVol.code, 125);
    assert.match(badVol.stderr, /named volumes are not supported/);
    const badFormat = await berth(["images", "-o", "xml"], { env });
    assert.equal(badFormat.code, 2);
    assert.match(badFormat.stderr, /--output must be json, yaml or table/);
    // Options after the image belong to the container's command, not to berth.
    const passthrough = await berth(["run", "busybox", "ls", "--bogus"], { env });
    assert.equal(passthrough.code, 125);
    assert.match(passthrough.stderr, /no socket at/);
  });

  test("completion scripts for bash and zsh", async () => {
    const bash = await berth(["completion", "bash"]);
    assert.equal(bash.code, 0);
    assert.match(bash.stdout, /complete -F _berth berth/);
    assert.match(bash.stdout, /run\) opts="[^"]*--rm/);
    const check = spawnSync("bash", ["-n"], { input: bash.stdout });
    assert.equal(check.status, 0, check.stderr.toString());
    // The script completes subcommands when sourced.
    const comp = spawnSync("bash", [
      "-c",
      `${bash.stdout}\nCOMP_WORDS=(berth pu); COMP_CWORD=1; _berth; echo "\${COMPREPLY[@]}"`,
    ]);
    assert.match(comp.stdout.toString(), /\bpull\b/);
    const zsh = await berth(["completion", "zsh"]);
    assert.equal(zsh.code, 0);
    assert.match(zsh.stdout, /^#compdef berth/);
    assert.match(zsh.stdout, /'run:Run a command/);
    const fish = await berth(["completion", "fish"]);
    assert.equal(fish.code, 2);
    assert.match(fish.stderr, /choose bash or zsh/);
  });

  test("colours only on a terminal, and never with NO_COLOR", async () => {
    const env: NodeJS.ProcessEnv = { ...process.env, BERTH_ADDRESS: NO_DAEMON };
    delete env.NO_COLOR;
    const tty = runInPty([process.execPath, BERTH, "ps"], { env });
    const r = await tty.exited;
    assert.equal(r.code, 1);
    assert.match(r.output, /\x1b\[31mberth:/);
    const plainTty = runInPty([process.execPath, BERTH, "ps"], { env: { ...env, NO_COLOR: "1" } });
    const p = await plainTty.exited;
    assert.match(p.output, /berth: cannot reach berthd/);
    assert.doesNotMatch(p.output, /\x1b\[3\dm/);
    const piped = await berth(["ps"], { env: { BERTH_ADDRESS: NO_DAEMON } });
    assert.doesNotMatch(piped.stderr, /\x1b\[/);
  });
});

describe("berth against a daemon", () => {
  let d: TestDaemon;
  before(async () => {
    d = await startDaemon({ config: `[cni]\nconf_dir = "{{dir}}/net.d"\n` });
  });
  after(() => d?.stop());

  test("version shows client and server", async () => {
    const r = await berth(["version"], { env: { BERTH_ADDRESS: d.socket } });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Client:\n Version: +\d+\.\d+\.\d+/);
    assert.match(r.stdout, /Server:\n Runtime: +berth\n Version: +\d+\.\d+\.\d+\n CRI API: +v1/);
    const j = await berth(["-a", d.socket, "version", "-o", "json"]);
    const v = JSON.parse(j.stdout) as { client: { version: string }; server: { runtimeName: string; address: string } };
    assert.equal(v.server.runtimeName, "berth");
    assert.equal(v.server.address, d.socket);
    assert.equal(
      v.client.version,
      JSON.parse((await import("node:fs")).readFileSync(join(REPO_ROOT, "package.json"), "utf8")).version,
    );
  });

  test("info summarises the daemon through berth.v1.Berth/Info", async () => {
    const r = await berth(["info"], { env: { BERTH_ADDRESS: d.socket } });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`Root: +${d.root}`));
    assert.match(r.stdout, /Runtimes: +runc \(default\), runc-1\.5, runsc/);
    assert.match(r.stdout, /RuntimeReady: +true/);
    assert.match(r.stdout, /Images: +0/);
    const y = await berth(["info", "-o", "yaml"], { env: { BERTH_ADDRESS: d.socket } });
    assert.match(y.stdout, new RegExp(`^address: ${d.socket}$`, "m"));
    assert.match(y.stdout, new RegExp(`^pid: ${d.pid}$`, "m"));
  });

  test("empty lists print only their headers, -q prints nothing", async () => {
    const env = { BERTH_ADDRESS: d.socket };
    assert.equal(
      (await berth(["ps", "-a"], { env })).stdout,
      "CONTAINER ID   IMAGE   CREATED   STATUS   NAME   POD ID\n",
    );
    assert.equal((await berth(["images", "-q"], { env })).stdout, "");
    assert.deepEqual(JSON.parse((await berth(["pods", "-o", "json"], { env })).stdout), []);
    const missing = await berth(["logs", "nosuch"], { env });
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no such container: nosuch\n {2}hint: list them with `berth ps -a`/);
    const rmi = await berth(["rmi", "nosuch:1"], { env });
    assert.equal(rmi.code, 1);
    assert.match(rmi.stderr, /no such image: nosuch:1/);
    const never = await berth(["run", "--pull", "never", "nosuch:1"], { env });
    assert.equal(never.code, 125);
    assert.match(never.stderr, /hint: pull it first: berth pull nosuch:1/);
  });
});
