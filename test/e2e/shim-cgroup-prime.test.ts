// The shim's cgroup priming (src/shim/cgroup-prime.ts) on this real host, in a child process
// that stands in for the shim: the write into its own cgroup succeeds and changes nothing, and
// a process moved to another cgroup meanwhile is primed where it is now, not moved back.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

import { ownCgroupProcsFile } from "../../src/shim/cgroup-prime.js";

const MODULE = join(dirname(fileURLToPath(import.meta.url)), "../../src/shim/cgroup-prime.js");

// Primes once per line on stdin; after each, prints what it saw as one JSON line.
const CHILD = `
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
const { ownCgroupPrimer } = await import(${JSON.stringify(MODULE)});
const off = [];
const primer = ownCgroupPrimer((why) => off.push(why));
for await (const _ of createInterface({ input: process.stdin })) {
  const before = readFileSync("/proc/self/cgroup", "utf8");
  await primer.prime();
  console.log(JSON.stringify({ off, before, after: readFileSync("/proc/self/cgroup", "utf8") }));
}
`;

interface Seen {
  off: string[];
  before: string;
  after: string;
}

function startChild() {
  const child = spawn(process.execPath, ["--input-type=module", "-e", CHILD], { stdio: ["pipe", "pipe", "inherit"] });
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  return {
    pid: child.pid!,
    async prime(): Promise<Seen> {
      child.stdin!.write("prime\n");
      const next = await lines.next();
      assert.ok(!next.done, "the child answered");
      return JSON.parse(next.value as string) as Seen;
    },
    async end(): Promise<void> {
      const gone = new Promise((r) => child.once("exit", r));
      child.stdin!.end();
      await gone;
    },
  };
}

test("priming writes into the process's own cgroup and leaves it where it was", async () => {
  const c = startChild();
  try {
    for (let i = 0; i < 3; i++) {
      const seen = await c.prime();
      assert.deepEqual(seen.off, [], "priming stays on on this host");
      assert.equal(seen.after, seen.before);
    }
  } finally {
    await c.end();
  }
});

test("a process moved to another cgroup is primed there, not moved back", async () => {
  const self = readFileSync("/proc/self/cgroup", "utf8");
  const file = ownCgroupProcsFile(self, readFileSync("/proc/self/mountinfo", "utf8"));
  assert.ok(file, "this host has a cgroup hierarchy to prime in");
  // A child of the test's own cgroup in the hierarchy the primer writes to.
  const dir = join(dirname(file), `berth-prime-test-${process.pid}`);
  const c = startChild();
  let made = false;
  try {
    const first = await c.prime();
    assert.deepEqual(first.off, []);
    mkdirSync(dir);
    made = true;
    writeFileSync(join(dir, "cgroup.procs"), String(c.pid));
    const seen = await c.prime();
    assert.deepEqual(seen.off, []);
    const moved = readFileSync(join(dir, "cgroup.procs"), "utf8").split("\n");
    assert.ok(moved.includes(String(c.pid)), `the child is still in ${dir} after priming: ${seen.after}`);
    assert.equal(seen.after, seen.before);
  } finally {
    await c.end();
    if (made) rmdirSync(dir);
  }
});
