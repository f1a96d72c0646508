// Natively spawned programs next to the shim's subreaper (src/shim/reaper.ts), as in the
// serving shim: orphans are reaped by the reaper, every program keeps its own exit status, and
// child_process children (trackChild) keep theirs. Its own file: the subreaper and the SIGCHLD
// handler are process-wide, and node's test runner gives each file its own process.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { readFileSync, readdirSync } from "node:fs";

import * as sys from "../../src/sys/index.js";
import { runProgram, spawnChild } from "../../src/sys/spawn.js";
import { reapOrphans, startReaper, trackChild } from "../../src/shim/reaper.js";
import { until } from "../helpers/cri.js";

/** Our children (pids) with their state letter. */
function children(): Map<number, string> {
  const out = new Map<number, string>();
  for (const tid of readdirSync("/proc/self/task")) {
    let list = "";
    try {
      list = readFileSync(`/proc/self/task/${tid}/children`, "utf8");
    } catch {
      continue;
    }
    for (const p of list.trim().split(/\s+/).filter(Boolean)) {
      try {
        const stat = readFileSync(`/proc/${p}/stat`, "utf8");
        out.set(Number(p), stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3));
      } catch {
        // gone meanwhile
      }
    }
  }
  return out;
}

test("spawned programs, child_process children and reaped orphans each keep their own exit status", async (t) => {
  const warnings: string[] = [];
  const onWarning = (w: Error) => warnings.push(w.message);
  process.on("warning", onWarning);
  startReaper();
  const orphanPids: number[] = [];
  t.after(() => {
    process.off("warning", onWarning);
    for (const pid of orphanPids) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // gone
      }
    }
    reapOrphans();
    sys.prctlSetChildSubreaper(false);
  });

  // A batch of native programs and child_process children, all at once.
  const batch = (tag: number) => {
    const native = Array.from({ length: 40 }, (_, i) =>
      runProgram("sh", ["-c", `exit $(($0 % 200))`, String(i + tag)]).then((r) => r.code),
    );
    const viaChildProcess = Array.from({ length: 10 }, async (_, i) => {
      const c = trackChild(spawn("sh", ["-c", `exit ${(i + tag) % 200}`], { stdio: "ignore" }));
      const [code] = (await once(c, "exit")) as [number | null];
      return code;
    });
    return Promise.all([...native, ...viaChildProcess]);
  };
  const expected = (tag: number) => [
    ...Array.from({ length: 40 }, (_, i) => (i + tag) % 200),
    ...Array.from({ length: 10 }, (_, i) => (i + tag) % 200),
  ];

  // Native programs that each leave an orphan behind: reparented to us, the subreaper.
  const parents = await Promise.all(
    Array.from({ length: 20 }, (_, i) =>
      runProgram("sh", ["-c", "sleep 1000 >/dev/null 2>&1 & echo $!; exit $0", String(i)]),
    ),
  );
  parents.forEach((r, i) => {
    assert.equal(r.code, i);
    orphanPids.push(Number(r.stdout.toString().trim()));
  });
  const ours = children();
  for (const p of orphanPids) assert.equal(ours.get(p), "S", `orphan ${p} is our (sleeping) child`);

  // The orphans die while batches run: their SIGCHLDs, the pidfds' and libuv's overlap.
  const running = [batch(0), batch(50)];
  for (const p of orphanPids) process.kill(p, "SIGKILL");
  const running2 = batch(100);
  assert.deepEqual(await running[0], expected(0));
  assert.deepEqual(await running[1], expected(50));
  assert.deepEqual(await running2, expected(100));
  // The reaper took every orphan: none is left, not even as a zombie.
  await until(() => orphanPids.every((p) => !children().has(p)), "the reaper to reap every orphan");
  assert.deepEqual(warnings, [], "no exit status was taken from a spawned program");
});

test("the reaper leaves the zombie of a spawned program to its pidfd", async (t) => {
  sys.prctlSetChildSubreaper(true);
  t.after(() => sys.prctlSetChildSubreaper(false));
  const warnings: string[] = [];
  const onWarning = (w: Error) => warnings.push(w.message);
  process.on("warning", onWarning);
  t.after(() => process.off("warning", onWarning));
  const child = spawnChild("sh", ["-c", "exit 5"], { stdio: ["ignore", "ignore", "ignore"] });
  // Wait for the zombie without yielding to the event loop, so the pidfd's callback cannot
  // run first: the reaper then sees the exited program before its owner does.
  const deadline = Date.now() + 30_000;
  while (children().get(child.pid) !== "Z") {
    if (Date.now() > deadline) assert.fail(`program ${child.pid} did not exit`);
  }
  assert.equal(reapOrphans(), 0);
  assert.deepEqual(await child.exited, { code: 5, signal: null });
  assert.deepEqual(warnings, []);
});
