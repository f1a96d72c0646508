// prctlSetChildSubreaper + waitpid. Kept in its own file because both change process-wide
// state (this process adopts orphans; waitpid(-1) reaps any child), and node's test runner
// gives each file its own process, so no other test's children can be stolen here.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import * as sys from "../../src/sys/index.js";

/**
 * Runs `sh -c script` where the script starts a background job and prints its pid. Resolves
 * once sh has exited and been reaped by Node, so the job is an orphan, now our child.
 */
async function orphan(script: string): Promise<number> {
  const sh = spawn("sh", ["-c", script], { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  sh.stdout.on("data", (d: Buffer) => (out += d.toString()));
  const [code] = (await once(sh, "close")) as [number | null];
  assert.equal(code, 0);
  const pid = Number.parseInt(out.trim(), 10);
  assert.ok(pid > 0, `pid from sh: ${out}`);
  return pid;
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // already gone
  }
}

/** Reaps pid if it is (still) our child, so a failed test leaves no zombie. */
function reapQuietly(pid: number): void {
  try {
    sys.waitpid(pid, 0);
  } catch {
    // not our child or already reaped
  }
}

function assertECHILD(): void {
  assert.throws(
    () => sys.waitpid(-1, sys.WNOHANG),
    (err: unknown) => err instanceof sys.SysError && err.code === "ECHILD" && err.syscall === "waitpid",
  );
}

test("waitpid with no children throws ECHILD", () => {
  assertECHILD();
  assert.throws(() => sys.waitpid(-1, 0), { code: "ECHILD" });
});

test("a subreaper adopts an orphaned grandchild and waitpid(-1) decodes its exit code", async (t) => {
  sys.prctlSetChildSubreaper(true);
  t.after(() => sys.prctlSetChildSubreaper(false));
  const pid = await orphan("(sleep 0.2; exit 7) >/dev/null & echo $!");
  try {
    const res = sys.waitpid(-1, 0);
    assert.deepEqual(res, { pid, exited: true, exitCode: 7, signaled: false, signal: 0 });
  } finally {
    killQuietly(pid);
    reapQuietly(pid);
  }
  assertECHILD();
});

test("WNOHANG with a live child returns pid 0; a SIGKILLed orphan is decoded as signaled/9", async (t) => {
  sys.prctlSetChildSubreaper(true);
  t.after(() => sys.prctlSetChildSubreaper(false));
  const pid = await orphan("sleep 30 >/dev/null & echo $!");
  try {
    assert.deepEqual(sys.waitpid(-1, sys.WNOHANG), { pid: 0, exited: false, exitCode: 0, signaled: false, signal: 0 });
    assert.equal(sys.waitpid(pid, sys.WNOHANG).pid, 0);
    process.kill(pid, "SIGKILL");
    const res = sys.waitpid(-1, 0);
    assert.deepEqual(res, { pid, exited: false, exitCode: 0, signaled: true, signal: 9 });
  } finally {
    killQuietly(pid);
    reapQuietly(pid);
  }
  assertECHILD();
});

test("without the subreaper an orphan goes to init, not to us", async () => {
  sys.prctlSetChildSubreaper(false);
  const pid = await orphan("sleep 30 >/dev/null & echo $!");
  try {
    assertECHILD();
  } finally {
    killQuietly(pid);
  }
});
