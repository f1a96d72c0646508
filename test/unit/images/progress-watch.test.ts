// The pull progress timeout's logic (src/images/progress-watch.ts) on a fake clock: a stall
// fires only while a transfer is open and no bytes came for the whole timeout; progress,
// an idle spell, and a pull joining a running download behave as containerd's reporter does.
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  ProgressWatch,
  TransferFanout,
  type TransferInfo,
  type WatchClock,
} from "../../../src/images/progress-watch.js";
import { formatMs, stallError } from "../../../src/images/pull.js";

/** Time moves only when the test says; timers fire as it passes them. */
class FakeClock implements WatchClock {
  t = 0;
  private timers = new Map<number, { at: number; fn: () => void }>();
  private next = 1;
  now(): number {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.next++;
    this.timers.set(id, { at: this.t + ms, fn });
    return id;
  }
  clearTimeout(h: unknown): void {
    this.timers.delete(h as number);
  }
  get pending(): number {
    return this.timers.size;
  }
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      const due = [...this.timers].filter(([, v]) => v.at <= end).sort((a, b) => a[1].at - b[1].at)[0];
      if (!due) break;
      this.timers.delete(due[0]);
      this.t = due[1].at;
      due[1].fn();
    }
    this.t = end;
  }
}

function setup(timeoutMs = 1000) {
  const clock = new FakeClock();
  const stalls: TransferInfo[][] = [];
  const watch = new ProgressWatch(timeoutMs, (open) => stalls.push(open), clock);
  return { clock, stalls, watch };
}

test("an open transfer that receives nothing for the timeout stalls once, naming it", () => {
  const { clock, stalls, watch } = setup();
  const h = watch.begin("sha256:aa", 10, 100);
  clock.advance(999);
  assert.equal(stalls.length, 0);
  clock.advance(1);
  assert.deepEqual(stalls, [[{ what: "sha256:aa", done: 10, total: 100 }]]);
  h.progress(20);
  clock.advance(5000);
  assert.equal(stalls.length, 1, "a watch fires at most once");
  assert.equal(clock.pending, 0);
});

test("bytes arriving keep the pull alive; the timeout counts from the last of them", () => {
  const { clock, stalls, watch } = setup();
  const h = watch.begin("sha256:aa", 0, 100);
  for (let i = 1; i <= 10; i++) {
    clock.advance(900);
    h.progress(i);
  }
  assert.equal(stalls.length, 0);
  clock.advance(999);
  assert.equal(stalls.length, 0);
  clock.advance(1);
  assert.equal(stalls.length, 1);
  assert.equal(stalls[0][0].done, 10);
  // Progress only ever moves forward: a resumed request reporting fewer bytes is not progress.
  const w2 = setup();
  const h2 = w2.watch.begin("sha256:bb", 50, 100);
  w2.clock.advance(600);
  h2.progress(40);
  w2.clock.advance(400);
  assert.equal(w2.stalls.length, 1);
});

test("nothing open is never a stall, and opening again restarts the clock", () => {
  const { clock, stalls, watch } = setup();
  const a = watch.begin("sha256:aa", 0, 10);
  clock.advance(800);
  a.end();
  assert.equal(clock.pending, 0, "no timer while nothing is open");
  clock.advance(10_000); // unpacking, or waiting for a download slot
  const b = watch.begin("sha256:bb", 0, 10);
  clock.advance(999);
  assert.equal(stalls.length, 0, "the idle spell does not count against the next transfer");
  clock.advance(1);
  assert.deepEqual(
    stalls[0].map((t) => t.what),
    ["sha256:bb"],
  );
  b.end();
  b.end();
});

test("with two transfers open, bytes on either count; a stall names every open one", () => {
  const { clock, stalls, watch } = setup();
  const a = watch.begin("sha256:aa", 0, 10);
  const b = watch.begin("sha256:bb", 0, 10);
  clock.advance(700);
  b.progress(5);
  clock.advance(700);
  assert.equal(stalls.length, 0);
  clock.advance(300);
  assert.deepEqual(
    stalls[0].map((t) => `${t.what}:${t.done}`),
    ["sha256:aa:0", "sha256:bb:5"],
  );
  a.end();
});

test("timeout 0 disables the watch; stop() silences it", () => {
  const off = setup(0);
  off.watch.begin("sha256:aa", 0, 10);
  off.clock.advance(1e9);
  assert.equal(off.stalls.length, 0);
  assert.equal(off.clock.pending, 0);
  const s = setup();
  s.watch.begin("sha256:aa", 0, 10);
  s.watch.stop();
  s.clock.advance(5000);
  assert.equal(s.stalls.length, 0);
  assert.equal(s.clock.pending, 0);
  s.watch.begin("sha256:cc", 0, 10);
  s.clock.advance(5000);
  assert.equal(s.stalls.length, 0, "a stopped watch takes no new transfers");
});

test("a pull joining a running download watches it from then on, until it leaves", () => {
  const one = setup();
  const two = setup();
  const f = new TransferFanout("sha256:aa", 100);
  const leaveOne = f.watch(one.watch);
  f.open(0);
  f.progress(30);
  one.clock.advance(500);
  two.clock.advance(500);
  const leaveTwo = f.watch(two.watch); // begins at the download's current offset
  one.clock.advance(500);
  two.clock.advance(500);
  assert.equal(one.stalls.length, 1, "the first pull waited 1000 ms without bytes");
  assert.equal(two.stalls.length, 0, "the second only 500 ms since it joined");
  two.clock.advance(500);
  assert.deepEqual(two.stalls, [[{ what: "sha256:aa", done: 30, total: 100 }]]);
  leaveOne();
  leaveTwo();
  assert.equal(f.watched, false);

  // Between requests (a retry's backoff) nothing is open for the watchers.
  const three = setup();
  const g = new TransferFanout("sha256:bb", 10);
  const leave = g.watch(three.watch);
  g.open(0);
  g.close();
  three.clock.advance(5000);
  assert.equal(three.stalls.length, 0);
  g.open(3);
  three.clock.advance(1000);
  assert.deepEqual(three.stalls, [[{ what: "sha256:bb", done: 3, total: 10 }]]);
  leave();
});

test("the stall error is DEADLINE_EXCEEDED naming the image, the blob, its bytes and the timeout", () => {
  const err = stallError("127.0.0.1:5000/test/big:1", 2000, [{ what: "sha256:aa", done: 5, total: 10 }]);
  assert.equal(err.kind, "DeadlineExceeded");
  assert.match(err.message, /pull of 127\.0\.0\.1:5000\/test\/big:1 made no progress for 2s/);
  assert.match(err.message, /sha256:aa \(5 of 10 bytes received\)/);
  assert.match(err.message, /image_pull_progress_timeout/);
  assert.deepEqual([formatMs(300_000), formatMs(2000), formatMs(1500)], ["5m", "2s", "1500ms"]);
});
