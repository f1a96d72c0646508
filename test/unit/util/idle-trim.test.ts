// The idle trim (src/util/idle-trim.ts): one full GC and malloc trim once the process is quiet
// after its heap grew, none while it is busy or while nothing grew.
import assert from "node:assert/strict";
import { beforeEach, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

import { mallocTrim } from "../../../src/sys/index.js";
import { startIdleTrim } from "../../../src/util/idle-trim.js";

const MiB = 1024 * 1024;

// A real full GC before each test, so what an earlier test left for V8 to collect cannot be
// collected during the next one and hide its growth (the test runner has no --expose-gc).
setFlagsFromString("--expose-gc");
const realGc = runInNewContext("gc") as () => void;
setFlagsFromString("--no-expose-gc");
beforeEach(() => realGc());

/** Keeps objects alive (so the heap's used size grows) until dropped. */
function grow(mib: number): unknown[] {
  const keep: unknown[] = [];
  for (let i = 0; i < mib * 16; i++) keep.push(new Array(8192).fill(i)); // 64 KiB each
  return keep;
}

/** Spins the event loop (busy) for `ms`, in slices so timers still run between them. */
async function busy(ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const slice = Date.now() + 20;
    while (Date.now() < slice) {
      // spin
    }
    await new Promise((r) => setImmediate(r));
  }
}

test("after the heap grows, one trim once the loop is quiet, then none while nothing grows", async () => {
  let gcs = 0;
  let trims = 0;
  const t = startIdleTrim({ intervalMs: 50, minGrowthBytes: 2 * MiB, gc: () => gcs++, mallocTrim: () => trims++ });
  try {
    const kept = grow(4);
    for (let i = 0; i < 100 && t.count === 0; i++) await sleep(50);
    assert.equal(t.count, 1);
    assert.equal(gcs, 2); // two collections per trim (the second compacts)
    assert.equal(trims, 1);
    await sleep(500); // ten more quiet checks with no further growth
    assert.equal(t.count, 1);
    assert.ok(kept.length > 0);
  } finally {
    t.stop();
  }
});

test("no trim while the event loop is busy, one when it goes quiet", async () => {
  const t = startIdleTrim({ intervalMs: 50, minGrowthBytes: 2 * MiB, gc: () => {}, mallocTrim: () => {} });
  try {
    const kept = grow(4);
    await busy(600);
    assert.equal(t.count, 0, "trimmed while the loop was busy");
    for (let i = 0; i < 100 && t.count === 0; i++) await sleep(50);
    assert.equal(t.count, 1);
    assert.ok(kept.length > 0);
  } finally {
    t.stop();
  }
});

test("no trim without growth", async () => {
  const t = startIdleTrim({ intervalMs: 50, minGrowthBytes: 64 * MiB, gc: () => {}, mallocTrim: () => {} });
  try {
    await sleep(500);
    assert.equal(t.count, 0);
  } finally {
    t.stop();
  }
});

test("mallocTrim (the native addon's malloc_trim) runs", () => {
  assert.equal(typeof mallocTrim(), "boolean");
});
