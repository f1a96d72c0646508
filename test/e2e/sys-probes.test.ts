// The host probes of the native binding (native/sys/probes.c) against the real kernel, as
// root: what they say on this host, that a broken input is reported rather than thrown or
// passed, and that nothing stays mounted and no probe process is left behind.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { probeRecursiveReadOnly, probeUsernsHostSys } from "../../src/cri/userns/probe.js";
import * as sys from "../../src/sys/index.js";

const mountTable = () => fs.readFileSync("/proc/self/mountinfo", "utf8");
/** This process's children (a probe's cloned child must be reaped by the time it returns). */
const children = () => fs.readFileSync(`/proc/self/task/${process.pid}/children`, "utf8").trim();

test("a recursively read-only mount refuses a write in its submount here (Linux 5.12+), and nothing stays mounted", async (t) => {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), "berth-rro-"));
  t.after(() => fs.rmSync(base, { recursive: true, force: true }));
  const before = mountTable();
  const dir = path.join(base, "probe");
  assert.equal(await probeRecursiveReadOnly(dir), null);
  assert.equal(mountTable(), before);
  assert.equal(fs.existsSync(dir), false, "the probe removes its directory");
});

test("the recursive read-only probe on a path it cannot mount on says why, and leaves nothing", (t) => {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), "berth-rro-"));
  t.after(() => fs.rmSync(base, { recursive: true, force: true }));
  const before = mountTable();
  assert.equal(sys.probeRecursiveReadOnly(path.join(base, "missing")), "mount tmpfs: ENOENT");
  const file = path.join(base, "file");
  fs.writeFileSync(file, "");
  assert.match(sys.probeRecursiveReadOnly(file) ?? "", /^mount tmpfs: ENOTDIR$/);
  assert.equal(mountTable(), before);
});

test("a user namespace that does not own the host's network binds the host's /sys read-only here, and reads it", async () => {
  const before = mountTable();
  assert.equal(await probeUsernsHostSys(), null);
  assert.equal(mountTable(), before);
  assert.equal(children(), "");
});

test("the /sys probe reports a missing submount or file by name, and reaps its process", () => {
  assert.equal(
    sys.probeUsernsHostSys(1_000_000, 65536, "no-such-dir", "class/net/lo/ifindex"),
    "open the submount: ENOENT",
  );
  assert.equal(
    sys.probeUsernsHostSys(1_000_000, 65536, "", "class/net/no-such-if/ifindex"),
    "open a /sys file: ENOENT",
  );
  // a mapping the kernel refuses (past the largest id) fails before the child does anything
  assert.match(sys.probeUsernsHostSys(2 ** 32 - 10, 65536, "", "class/net/lo/ifindex") ?? "", /^write uid_map: E/);
  assert.equal(children(), "");
});
