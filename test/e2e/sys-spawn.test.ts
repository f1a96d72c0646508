// sys/spawn.ts against real processes: programs started with posix_spawn and reaped through a
// pidfd. Every test ends the processes it starts, also when an assertion fails. The reaping
// next to the shim's subreaper changes process-wide state, so it lives in sys-spawn-reaper.test.ts.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { fileURLToPath } from "node:url";

import { SysError } from "../../src/sys/index.js";
import {
  MaxBufferError,
  RunTimeoutError,
  runProgram,
  spawnChild,
  spawnImplementation,
  type Child,
} from "../../src/sys/spawn.js";
import { until } from "../helpers/cri.js";

const spawnModule = fileURLToPath(new URL("../../src/sys/spawn.js", import.meta.url));

function killQuietly(pid: number): void {
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // already gone
  }
}

/** Ends a child a test started, whatever state the test left it in. */
async function finish(child: Child): Promise<void> {
  child.kill("SIGKILL");
  await child.exited;
}

/**
 * Runs a node script (ESM) that may import spawn.js as SPAWN; returns its stdout. The node
 * process starts with fd 20 open on /dev/null and not close-on-exec (bash opens it), as an
 * fd inherited from whoever started berthd would be.
 */
async function nodeScript(script: string): Promise<string> {
  const body = `const SPAWN = await import(${JSON.stringify(spawnModule)});\n${script}`;
  const child = spawn(
    "bash", // dash would open it close-on-exec
    ["-c", 'exec 20</dev/null; exec "$0" "$@"', process.execPath, "--input-type=module", "-e", body],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  let out = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  // a watchdog, not a timing assertion: a hung script must not hang the suite
  const watchdog = setTimeout(() => child.kill("SIGKILL"), 60_000);
  const [code, signal] = (await once(child, "close")) as [number | null, string | null];
  clearTimeout(watchdog);
  assert.equal(signal, null, `script killed (hung?): ${out}`);
  assert.equal(code, 0, `script failed: ${out}`);
  return out;
}

test("this machine uses the native spawn (posix_spawn + pidfd)", () => {
  assert.equal(spawnImplementation(), process.env.BERTH_SPAWN === "child_process" ? "child_process" : "native");
});

test("exit codes and terminating signals are reported", async () => {
  for (const n of [0, 1, 7, 255]) {
    const r = await runProgram("sh", ["-c", `exit ${n}`]);
    assert.deepEqual([r.code, r.signal], [n, null]);
  }
  const r = await runProgram("sh", ["-c", "kill -TERM $$"]);
  assert.deepEqual([r.code, r.signal], [null, "SIGTERM"]);
  const child = spawnChild("sh", ["-c", "kill -SEGV $$"], { stdio: ["ignore", "ignore", "ignore"] });
  assert.deepEqual(await child.exited, { code: null, signal: "SIGSEGV" });
  assert.equal(child.exitCode, null);
  assert.equal(child.signalCode, "SIGSEGV");
});

test("stdout and stderr are collected apart; stdin is written and then closed", async () => {
  const input = Buffer.alloc(300_000, "x"); // more than a pipe holds: the writes must wait for the reader
  const r = await runProgram("sh", ["-c", "wc -c; echo done >&2"], { input });
  assert.equal(r.code, 0);
  assert.equal(r.stdout.toString().trim(), String(input.length));
  assert.equal(r.stderr.toString(), "done\n");
});

test("events: 'exit' with code and signal, 'close' after the output has been read", async () => {
  const child = spawnChild("sh", ["-c", "cat; echo bye"]);
  const seen: string[] = [];
  let out = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  child.on("exit", (code, signal) => seen.push(`exit ${code} ${signal}`));
  child.on("close", (code, signal) => seen.push(`close ${code} ${signal}`));
  child.stdin!.end("hello\n");
  await once(child, "close");
  assert.deepEqual(seen, ["exit 0 null", "close 0 null"]);
  assert.equal(out, "hello\nbye\n");
});

test("the child gets only its stdio slots: no other fd of ours, not even a non-close-on-exec one", async () => {
  // Node opens everything close-on-exec, so the fd that must not leak comes from outside: fd 20
  // of a node process started by a shell (nodeScript). ls's own directory fd is the lowest free one.
  const out = await nodeScript(`
    const r = await SPAWN.runProgram("ls", ["/proc/self/fd"]);
    const cp = (await import("node:child_process")).execFileSync("ls", ["/proc/self/fd"], { stdio: ["ignore", "pipe", "ignore"] });
    const list = (b) => b.toString().split("\\n").filter(Boolean);
    console.log(JSON.stringify({ spawn: SPAWN.spawnImplementation(), ours: list(r.stdout), childProcess: list(cp) }));
  `);
  const seen = JSON.parse(out) as { spawn: string; ours: string[]; childProcess: string[] };
  // The inherited fd reaches a child_process child: the test can tell a leak.
  assert.ok(seen.childProcess.includes("20"), `child_process child saw ${seen.childProcess.join(" ")}`);
  if (seen.spawn !== "native") return; // BERTH_SPAWN=child_process: child_process's behaviour
  assert.deepEqual(seen.ours, ["0", "1", "2", "3"]);

  // The shell itself holds its three slots and nothing else.
  const r = await runProgram("sh", ["-c", "ls /proc/$$/fd"]);
  assert.deepEqual(r.stdout.toString().split("\n").filter(Boolean).sort(), ["0", "1", "2"]);
});

test("an extra socket slot talks both ways; an fd of ours can fill a slot", async () => {
  const child = spawnChild("sh", ["-c", 'read line <&3; echo "got $line" >&3; echo out'], {
    stdio: ["ignore", "pipe", 2, "socket"],
  });
  try {
    const sock = child.stdio[3]!;
    let reply = "";
    sock.on("data", (d: Buffer) => (reply += d.toString()));
    sock.write("ping\n");
    let out = "";
    child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
    await once(child, "close");
    assert.equal(reply, "got ping\n");
    assert.equal(out, "out\n");
    assert.equal(child.exitCode, 0);
  } finally {
    await finish(child);
  }
});

test("env, cwd and the PATH of the given env", async () => {
  const r = await runProgram("sh", ["-c", 'echo "$FOO"; pwd; echo "${HOME:-unset}"'], {
    env: { FOO: "bar baz", PATH: "/usr/bin:/bin" },
    cwd: tmpdir(),
  });
  assert.equal(r.stdout.toString(), `bar baz\n${tmpdir()}\nunset\n`);
  // `true` is looked up on the child's PATH, not ours
  assert.throws(
    () => spawnChild("true", [], { env: { PATH: "/nonexistent" } }),
    (e: unknown) => e instanceof SysError && e.code === "ENOENT",
  );
});

test("a program that cannot start throws a typed error at once", () => {
  assert.throws(
    () => spawnChild("/nonexistent/program", []),
    (e: unknown) => e instanceof SysError && e.code === "ENOENT" && e.path === "/nonexistent/program",
  );
  assert.throws(
    () => spawnChild("berth-no-such-program", []),
    (e: unknown) => e instanceof SysError && e.code === "ENOENT",
  );
  assert.throws(
    () => spawnChild("/etc/passwd", []),
    (e: unknown) => e instanceof SysError && e.code === "EACCES",
  );
  assert.throws(
    () => spawnChild("true", [], { cwd: "/nonexistent/dir" }),
    (e: unknown) => e instanceof SysError && e.code === "ENOENT" && e.path === "/nonexistent/dir",
  );
});

test("the child starts with default signal dispositions and an empty mask (node ignores SIGPIPE)", async () => {
  const r = await runProgram("grep", ["-E", "^Sig(Ign|Blk):", "/proc/self/status"]);
  const [blk, ign] = r.stdout
    .toString()
    .trim()
    .split("\n")
    .map((l) => BigInt(`0x${l.split("\t")[1]}`));
  assert.equal(blk, 0n);
  // signals 1-31; glibc keeps 32 and 33 to itself (sigfillset leaves them out)
  assert.equal(ign! & 0x7fffffffn, 0n, `SigIgn ${ign!.toString(16)}`);
});

test("kill ends it; after the exit kill is a no-op (the pid may be someone else's)", async () => {
  const child = spawnChild("sleep", ["1000"], { stdio: ["ignore", "ignore", "ignore"] });
  try {
    assert.ok(child.pid > 0);
    assert.equal(child.kill("SIGKILL"), true);
    assert.deepEqual(await child.exited, { code: null, signal: "SIGKILL" });
    assert.equal(child.kill("SIGKILL"), false);
  } finally {
    killQuietly(child.pid);
  }
});

test("detached: its own session and group; killGroup also ends what it started", async () => {
  const child = spawnChild(
    "sh",
    ["-c", "read a b c d pgrp sid rest </proc/$$/stat; echo $pgrp $sid; sleep 1000 & echo $!; wait"],
    { detached: true, stdio: ["ignore", "pipe", "ignore"] },
  );
  let sleeper = 0;
  try {
    let out = "";
    child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
    await until(() => out.split("\n").length >= 3, "sh to print its group and the sleep's pid");
    const [ids, pid] = out.split("\n");
    assert.equal(ids, `${child.pid} ${child.pid}`);
    sleeper = Number(pid);
    assert.ok(existsSync(`/proc/${sleeper}`));
    assert.equal(child.killGroup("SIGKILL"), true);
    assert.deepEqual(await child.exited, { code: null, signal: "SIGKILL" });
    // the sleep was in the group: it dies too (init reaps it)
    await until(() => {
      try {
        return readFileSync(`/proc/${sleeper}/stat`, "utf8").split(") ")[1]!.startsWith("Z");
      } catch {
        return true;
      }
    }, "the group's sleep to die");
  } finally {
    await finish(child);
    if (sleeper) killQuietly(sleeper);
  }
});

test("maxBuffer kills the program and says which stream overflowed", async () => {
  await assert.rejects(
    runProgram("yes", [], { maxBuffer: 64 << 10 }),
    (e: unknown) =>
      e instanceof MaxBufferError &&
      e.stream === "stdout" &&
      e.result.signal === "SIGTERM" &&
      e.result.stdout.length === 64 << 10,
  );
});

test("a timeout kills the program with the kill signal", async () => {
  await assert.rejects(
    runProgram("sleep", ["1000"], { timeoutMs: 100, killSignal: "SIGKILL" }),
    (e: unknown) => e instanceof RunTimeoutError && e.result.signal === "SIGKILL",
  );
});

test("many concurrent spawns each get their own status and output", async () => {
  const n = 200;
  const rs = await Promise.all(
    Array.from({ length: n }, (_, i) => runProgram("sh", ["-c", `echo $0; exit $(($0 % 256))`, String(i)])),
  );
  rs.forEach((r, i) => {
    assert.equal(r.code, i % 256);
    assert.equal(r.stdout.toString(), `${i}\n`);
  });
});

test("an unref'd child does not keep node running; a ref'd one does until it exits", async () => {
  const out = await nodeScript(`
    const c = SPAWN.spawnChild("sleep", ["1000"], { stdio: ["ignore", "ignore", "ignore"] });
    c.unref();
    const d = SPAWN.spawnChild("sh", ["-c", "sleep 0.2"], { stdio: ["ignore", "ignore", "ignore"] });
    d.on("exit", (code) => console.log("ref'd exited", code));
    console.log(c.pid);
  `);
  const [pid, line] = out.trim().split("\n");
  killQuietly(Number(pid));
  assert.equal(line, "ref'd exited 0");
});
