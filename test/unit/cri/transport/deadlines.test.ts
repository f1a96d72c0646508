// Deadlines (src/cri/transport/deadlines.ts): a far deadline is swept, a near one has its own
// timer, a cleared one never fires, and the sweep stops once nothing is watched.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Deadlines, SWEEP_MS } from "../../../../src/cri/transport/deadlines.js";

function call(timeoutMs: number) {
  let resolve!: (at: number) => void;
  const fired = new Promise<number>((r) => (resolve = r));
  const c = { deadlineAt: performance.now() + timeoutMs, expire: () => resolve(performance.now()) };
  return { c, fired };
}

test("a near deadline fires on its own timer, not before it passed", async () => {
  const d = new Deadlines();
  const { c, fired } = call(50);
  d.watch(c, 50);
  assert.equal(d.size, 0);
  assert.ok((await fired) >= c.deadlineAt - 1);
});

test("a far deadline is swept: it fires once it passed, and the set empties", async () => {
  const d = new Deadlines();
  const { c, fired } = call(2 * SWEEP_MS + 10);
  d.watch(c, 2 * SWEEP_MS + 10);
  assert.equal(d.size, 1);
  // The sweep is unref'd: keep the test's event loop alive until it fires.
  const keep = setInterval(() => {}, 1000);
  try {
    assert.ok((await fired) >= c.deadlineAt);
  } finally {
    clearInterval(keep);
  }
  assert.equal(d.size, 0);
});

test("a cleared deadline never fires (both kinds)", async () => {
  const d = new Deadlines();
  let fired = 0;
  const near = { deadlineAt: performance.now() + 20, expire: () => fired++ };
  const far = { deadlineAt: performance.now() + 2 * SWEEP_MS, expire: () => fired++ };
  d.watch(near, 20)();
  d.watch(far, 2 * SWEEP_MS)();
  assert.equal(d.size, 0);
  await new Promise((r) => setTimeout(r, 3 * SWEEP_MS + 50));
  assert.equal(fired, 0);
});
