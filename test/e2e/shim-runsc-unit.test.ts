// The shim's runsc pieces that need no runsc: the terminal sub-container wrapper (create now,
// start at the gate), and how an exec of a runsc container is signalled (inside the sandbox,
// by its pid there). A stand-in runsc script logs each call and answers as runsc does.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";

import type { OciRuntime } from "../../src/shim/runtime.js";
import {
  execInternalPidFile,
  killRunscExec,
  openGate,
  subcontainerTerminalArgv,
  terminalFiles,
  waitTerminalCreated,
} from "../../src/shim/runsc.js";
import { NotFoundError } from "../../src/util/errors.js";
import { until } from "../helpers/cri.js";

let dir: string;
before(() => (dir = mkdtempSync(join(tmpdir(), "berth-runsc-unit-"))));
after(() => rmSync(dir, { recursive: true, force: true }));

/** A stand-in runsc: create writes a sandbox pid (or fails with $FAIL_CREATE), wait reports 7. */
function fakeRunsc(name: string): { runtime: OciRuntime; calls: () => string[] } {
  const bin = join(dir, name);
  const log = join(dir, `${name}.calls`);
  writeFileSync(
    bin,
    `#!/bin/sh
echo "$*" >>${log}
case " $* " in
  *" create "*)
    [ -n "$FAIL_CREATE" ] && exit "$FAIL_CREATE"
    while [ $# -gt 0 ]; do [ "$1" = --pid-file ] && echo 4242 >"$2"; shift; done ;;
  *" wait "*) sleep 0.1; echo '{"id":"c","exitStatus":7}' ;;
esac
`,
  );
  chmodSync(bin, 0o755);
  const runtime = { command: bin, globalArgs: (l: string) => ["--log", l] } as unknown as OciRuntime;
  const calls = () => (existsSync(log) ? readFileSync(log, "utf8").trim().split("\n") : []);
  return { runtime, calls };
}

function runWrapper(argv: string[], env: NodeJS.ProcessEnv = {}) {
  const child = spawn(argv[0]!, argv.slice(1), { stdio: "ignore", env: { ...process.env, ...env } });
  const status = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
  // what the monitor's readiness means here: the wrapper exited 0, or failed
  const done = status.then((s) => {
    if (s !== 0) throw new Error(`exit status ${s}`);
  });
  done.catch(() => {});
  return { status, done };
}

describe("a runsc sub-container with a terminal", () => {
  test("is created at once (console socket passed to create) and started only when the gate says start", async () => {
    const { runtime, calls } = fakeRunsc("tty-ok");
    const state = join(dir, "ok");
    mkdirSync(state);
    const w = runWrapper(subcontainerTerminalArgv(runtime, "c", "/bundle", state, "/log"));
    assert.equal(await waitTerminalCreated(state, w.done), 4242);
    const f = terminalFiles(state);
    assert.deepEqual(calls(), [
      `--log /log create --bundle /bundle --console-socket ${f.consoleSocket} --pid-file ${f.created}.tmp c`,
    ]);

    assert.equal(openGate(state, "start"), true);
    assert.equal(await w.status, 0);
    assert.deepEqual(calls().slice(1, 2), ["--log /log start c"]);
    const waiter = Number(readFileSync(join(state, "pid"), "utf8").trim());
    assert.ok(waiter > 0, "the waiter's pid is where the monitor reads it");
    await until(() => calls().includes("--log /log wait c"), "the waiter to run runsc wait");
  });

  test("a gate opened with anything but start ends the wrapper without starting; a gone wrapper's gate is closed", async () => {
    const { runtime, calls } = fakeRunsc("tty-abort");
    const state = join(dir, "abort");
    mkdirSync(state);
    const w = runWrapper(subcontainerTerminalArgv(runtime, "c", "/bundle", state, "/log"));
    await waitTerminalCreated(state, w.done);
    assert.equal(openGate(state, "abort"), true);
    assert.equal(await w.status, 125);
    assert.equal(calls().length, 1, "only create ran");
    assert.equal(openGate(state, "start"), false);
  });

  test("a failed create fails the wait for it with runsc's status", async () => {
    const { runtime } = fakeRunsc("tty-fail");
    const state = join(dir, "fail");
    mkdirSync(state);
    const w = runWrapper(subcontainerTerminalArgv(runtime, "c", "/bundle", state, "/log"), { FAIL_CREATE: "3" });
    await assert.rejects(waitTerminalCreated(state, w.done), /exit status 3/);
    assert.equal(openGate(state, "start"), false);
  });
});

describe("signalling an exec of a runsc container", () => {
  test("goes to its pid inside the sandbox, through runsc kill --pid", async () => {
    const state = join(dir, "exec1");
    mkdirSync(state);
    writeFileSync(execInternalPidFile(state), "6\n");
    const sent: unknown[] = [];
    const runtime = { killPid: async (...a: unknown[]) => void sent.push(a) } as unknown as OciRuntime;
    await killRunscExec(runtime, "c", state, process.pid, 9);
    assert.deepEqual(sent, [["c", 6, 9]]);
  });

  test("a finished exec is NotFound; with no sandbox pid known the host process is signalled", async () => {
    const state = join(dir, "exec2");
    mkdirSync(state);
    writeFileSync(execInternalPidFile(state), "6\n");
    const failing = {
      killPid: async () => {
        throw new Error("runsc kill: no such process");
      },
    } as unknown as OciRuntime;
    const gone = spawnSync("true").pid!;
    await assert.rejects(killRunscExec(failing, "c", state, gone, 9), NotFoundError);

    rmSync(execInternalPidFile(state));
    const child = spawn("sleep", ["100"], { stdio: "ignore" });
    const exited = new Promise<NodeJS.Signals | null>((r) => child.on("exit", (_c, sig) => r(sig)));
    await killRunscExec(failing, "c", state, child.pid!, 15);
    assert.equal(await exited, "SIGTERM");
  });
});
