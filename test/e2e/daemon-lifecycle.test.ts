// berthd's process lifecycle: directories and socket permissions, refusing to share a socket
// or state dir with a live daemon, recovering from a crashed one, and clean shutdown.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { CgroupDriver } from "../../src/gen/cri/runtime/v1/api.js";
import { onMemoryFs } from "../../src/daemon/dirs.js";
import { runBerthd, startDaemon, type TestDaemon } from "../helpers/daemon.js";

function tempDir(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), "berth-lc-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const mode = (p: string) => statSync(p).mode & 0o7777;

test("root is 0700, state 0711 with a pid file, socket 0660 by default", async (t) => {
  const d = await startDaemon();
  t.after(() => d.stop());
  assert.equal(mode(d.root).toString(8), "700");
  assert.equal(mode(d.state).toString(8), "711");
  assert.equal(readFileSync(join(d.state, "berthd.pid"), "utf8").trim(), String(d.pid));
  assert.ok(statSync(d.socket).isSocket());
  assert.equal(mode(d.socket).toString(8), "660");
});

test("socket mode, uid and gid come from the config", async (t) => {
  const d = await startDaemon({ config: `[grpc]\nmode = "0600"\nuid = 0\ngid = 100\n` });
  t.after(() => d.stop());
  const st = statSync(d.socket);
  assert.equal((st.mode & 0o777).toString(8), "600");
  assert.equal(st.gid, 100);
  assert.equal(st.uid, 0);
});

test("an existing root with loose permissions is tightened to 0700", async (t) => {
  const dir = tempDir(t);
  const root = join(dir, "root");
  mkdirSync(root, { mode: 0o755 });
  chmodSync(root, 0o755);
  const d = await startDaemon({ args: ["--root", root] });
  t.after(() => d.stop());
  assert.equal(mode(root).toString(8), "700");
  assert.match(d.logs(), /tightened directory permissions/);
});

const tmpOnDisk = onMemoryFs(tmpdir()) === false;

test(
  "a state dir on a disk is named at start",
  { skip: tmpOnDisk ? false : `${tmpdir()} is not on a disk here` },
  async (t) => {
    const d = await startDaemon(); // its state dir is in the temp dir
    t.after(() => d.stop());
    assert.match(d.logs(), /the state dir is not on a tmpfs/);
  },
);

test("a state dir on a tmpfs is not named", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "berth-lc-"));
  const state = join(dir, "state");
  mkdirSync(state);
  execFileSync("mount", ["-t", "tmpfs", "tmpfs", state]);
  const started: TestDaemon[] = [];
  t.after(async () => {
    for (const x of started) await x.stop();
    execFileSync("umount", [state]);
    rmSync(dir, { recursive: true, force: true });
  });
  const d = await startDaemon({ state });
  started.push(d);
  assert.equal(readFileSync(join(state, "berthd.pid"), "utf8").trim(), String(d.pid));
  assert.doesNotMatch(d.logs(), /the state dir is not on a tmpfs/);
});

test("a second daemon on the same socket is refused and the first keeps serving", async (t) => {
  const first = await startDaemon();
  t.after(() => first.stop());
  const dir = tempDir(t);
  const second = await runBerthd([
    "--root",
    join(dir, "root"),
    "--state",
    join(dir, "state"),
    "--address",
    first.socket,
  ]);
  assert.notEqual(second.code, 0);
  assert.match(second.stderr, new RegExp(`another berthd is serving ${first.socket} \\(pid ${first.pid}\\)`));
  assert.equal((await first.rt.version({})).runtimeName, "berth");
  assert.ok(existsSync(first.socket), "the first daemon's socket is untouched");
});

test("a second daemon on the same state directory is refused", async (t) => {
  const first = await startDaemon();
  t.after(() => first.stop());
  const dir = tempDir(t);
  const second = await runBerthd([
    "--root",
    join(dir, "root"),
    "--state",
    first.state,
    "--address",
    join(dir, "other.sock"),
  ]);
  assert.notEqual(second.code, 0);
  assert.match(
    second.stderr,
    new RegExp(`another berthd \\(pid ${first.pid}\\) is using the state directory ${first.state}`),
  );
  assert.ok(!existsSync(join(dir, "other.sock")));
  assert.equal((await first.rt.version({})).runtimeName, "berth");
});

test("after a crash (SIGKILL) the stale socket and pid file are cleared and a new daemon starts", async (t) => {
  const crashed = await startDaemon();
  crashed.kill("SIGKILL");
  assert.equal((await crashed.exited).signal, "SIGKILL");
  assert.ok(statSync(crashed.socket).isSocket(), "a killed daemon leaves its socket behind");
  assert.ok(existsSync(join(crashed.state, "berthd.pid")));
  const dir = tempDir(t);
  // Same socket and state; the crashed daemon's directory is removed only after this test.
  t.after(() => crashed.stop());
  const next = await startDaemon({ socket: crashed.socket, state: crashed.state, args: ["--root", join(dir, "root")] });
  t.after(() => next.stop());
  assert.equal((await next.rt.version({})).runtimeName, "berth");
  assert.match(next.logs(), /removing stale socket/);
  assert.equal(readFileSync(join(crashed.state, "berthd.pid"), "utf8").trim(), String(next.pid));
});

test("a non-socket file at the socket path is refused and left alone", async (t) => {
  const dir = tempDir(t);
  const path = join(dir, "berth.sock");
  writeFileSync(path, "precious");
  const r = await runBerthd(["--root", join(dir, "root"), "--state", join(dir, "state"), "--address", path]);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /exists and is not a socket/);
  assert.equal(readFileSync(path, "utf8"), "precious");
  assert.ok(!existsSync(join(dir, "state", "berthd.pid")), "a refused start releases the pid file");
});

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  test(`${signal} exits 0 and removes the socket and pid file`, async (t) => {
    const d = await startDaemon();
    t.after(() => d.stop());
    d.kill(signal);
    assert.deepEqual(await d.exited, { code: 0, signal: null });
    assert.ok(!existsSync(d.socket), "socket removed");
    assert.ok(!existsSync(join(d.state, "berthd.pid")), "pid file removed");
    assert.match(d.logs(), /berthd stopped/);
  });
}

test("two daemons with different root, state and socket run side by side", async (t) => {
  const [a, b] = await Promise.all([startDaemon(), startDaemon({ config: `[cgroup]\ndriver = "systemd"\n` })]);
  t.after(() => Promise.all([a.stop(), b.stop()]));
  const [sa, sb] = await Promise.all([a.rt.status({ verbose: true }), b.rt.status({ verbose: true })]);
  assert.equal((JSON.parse(sa.info.config) as { root: string }).root, a.root);
  assert.equal((JSON.parse(sb.info.config) as { root: string }).root, b.root);
  assert.notEqual(a.socket, b.socket);
  assert.equal((await a.rt.runtimeConfig({})).linux?.cgroupDriver, CgroupDriver.CGROUPFS);
  assert.equal((await b.rt.runtimeConfig({})).linux?.cgroupDriver, CgroupDriver.SYSTEMD);
  // Stopping one leaves the other serving.
  await a.stop();
  assert.equal((await b.rt.version({})).runtimeName, "berth");
});
