// Work shared by callers that may give up (src/images/shared-flight.ts): one run per key, a
// caller that cancels leaves alone, the run is aborted only when the last caller leaves (who
// then returns once the run has wound down), and a caller arriving meanwhile starts afresh.
import assert from "node:assert/strict";
import { test } from "node:test";
import { SharedFlight } from "../../../src/images/shared-flight.js";
import { DeadlineExceededError } from "../../../src/util/errors.js";
import { Semaphore } from "../../../src/images/limit.js";

/** A run the test finishes by hand, recording whether it was aborted. */
function controllable() {
  const runs: { signal: AbortSignal; finish: (v: string) => void; cleanedUp: boolean }[] = [];
  const fn = (signal: AbortSignal) =>
    new Promise<string>((resolve, reject) => {
      const run = { signal, finish: resolve, cleanedUp: false };
      runs.push(run);
      signal.addEventListener("abort", () => {
        // Cleaning up takes a moment: the last caller must wait for it.
        setImmediate(() => {
          run.cleanedUp = true;
          reject(signal.reason as Error);
        });
      });
    });
  return { runs, fn };
}

test("callers of one key share one run and its result", async () => {
  const f = new SharedFlight<string>();
  const { runs, fn } = controllable();
  const a = f.do("k", fn, { signal: new AbortController().signal });
  const b = f.do("k", fn);
  assert.equal(runs.length, 1);
  assert.ok(f.has("k"));
  runs[0].finish("v");
  assert.deepEqual(await Promise.all([a, b]), ["v", "v"]);
  assert.equal(f.has("k"), false);
  const c = f.do("k", fn);
  assert.equal(runs.length, 2, "a call after the run settled starts a new run");
  runs[1].finish("w");
  assert.equal(await c, "w");
});

test("one caller cancelling leaves the run going for the other", async () => {
  const f = new SharedFlight<string>();
  const { runs, fn } = controllable();
  const ac = new AbortController();
  const a = f.do("k", fn, { signal: ac.signal, what: "pull of x" });
  const b = f.do("k", fn, { signal: new AbortController().signal });
  ac.abort(new Error("call cancelled by the client"));
  await assert.rejects(a, (e: Error & { kind?: string }) => {
    assert.equal(e.kind, "Canceled");
    assert.match(e.message, /pull of x cancelled: call cancelled by the client/);
    return true;
  });
  assert.equal(runs[0].signal.aborted, false);
  runs[0].finish("v");
  assert.equal(await b, "v");
});

test("the last caller leaving aborts the run and returns after it wound down", async () => {
  const f = new SharedFlight<string>();
  const { runs, fn } = controllable();
  const ac1 = new AbortController();
  const ac2 = new AbortController();
  const a = f.do("k", fn, { signal: ac1.signal });
  const b = f.do("k", fn, { signal: ac2.signal });
  ac1.abort();
  await assert.rejects(a, { kind: "Canceled" });
  ac2.abort();
  assert.equal(runs[0].signal.aborted, true);
  await assert.rejects(b, { kind: "Canceled" });
  assert.equal(runs[0].cleanedUp, true, "the last caller returned only after the run cleaned up");
  assert.equal(f.has("k"), false);
});

test("a caller arriving while an aborted run winds down waits for it, then starts afresh", async () => {
  const f = new SharedFlight<string>();
  const { runs, fn } = controllable();
  const ac = new AbortController();
  const a = f.do("k", fn, { signal: ac.signal });
  ac.abort();
  const b = f.do("k", fn);
  assert.equal(runs.length, 1, "the new run does not start before the old one settled");
  await assert.rejects(a, { kind: "Canceled" });
  await new Promise((r) => setImmediate(r));
  assert.equal(runs.length, 2);
  assert.equal(runs[0].cleanedUp, true);
  assert.equal(runs[1].signal.aborted, false);
  runs[1].finish("fresh");
  assert.equal(await b, "fresh");
});

test("a typed abort reason (the progress timeout) reaches the caller as it is; an aborted signal never joins", async () => {
  const f = new SharedFlight<string>();
  const { runs, fn } = controllable();
  const ac = new AbortController();
  const a = f.do("k", fn, { signal: ac.signal });
  const stall = new DeadlineExceededError("pull of x made no progress for 2s");
  ac.abort(stall);
  await assert.rejects(a, (e) => e === stall);
  await assert.rejects(f.do("k", fn, { signal: ac.signal }), (e) => e === stall);
  assert.equal(runs.length, 1);
  // A caller without a signal never leaves: its run is never aborted by others leaving.
  const ac2 = new AbortController();
  const c = f.do("j", fn);
  const d = f.do("j", fn, { signal: ac2.signal });
  ac2.abort();
  await assert.rejects(d, { kind: "Canceled" });
  assert.equal(runs[1].signal.aborted, false);
  runs[1].finish("kept");
  assert.equal(await c, "kept");
});

test("a semaphore waiter whose signal aborts leaves the queue without taking a slot", async () => {
  const s = new Semaphore(1);
  let release!: () => void;
  const holder = s.run(() => new Promise<void>((r) => (release = r)));
  const ac = new AbortController();
  let ran = false;
  const waiter = s.run(async () => {
    ran = true;
  }, ac.signal);
  ac.abort(new Error("gone"));
  await assert.rejects(waiter, /gone/);
  const next = s.run(async () => "next");
  release();
  await holder;
  assert.equal(await next, "next");
  assert.equal(ran, false);
});
