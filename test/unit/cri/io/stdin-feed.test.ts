// The stdin of a tty session is held behind the terminal sizes sent before it: a resize the
// backend applies by RPC must land before the keystrokes that follow it reach the process.
// The slow RPC is a fault that cannot be caused on demand for real, so the resize handler and
// the fifo are fakes here; the CLI's `exec -it` test runs the real path.
import { test } from "node:test";
import assert from "node:assert/strict";
import { PassThrough } from "node:stream";
import { feedStdin, type StdinSink } from "../../../../src/cri/io/stdin-feed.js";
import { ResizeQueue } from "../../../../src/streaming/remotecommand.js";
import type { TerminalSize } from "../../../../src/streaming/backend.js";

/** A pty stand-in: records sizes applied and input written, in order. */
function terminal() {
  const events: string[] = [];
  let full = false;
  const drains: (() => void)[] = [];
  const sink: StdinSink = {
    write: (chunk) => {
      events.push(`input ${chunk.toString()}`);
      return !full;
    },
    onDrain: (fn) => drains.push(fn),
  };
  return {
    events,
    sink,
    fill: () => (full = true),
    drain: () => {
      full = false;
      for (const d of drains.splice(0)) d();
    },
  };
}

/** Applies sizes one at a time; each apply waits until the test lets it finish. */
function slowResizer(queue: ResizeQueue, events: string[]) {
  const pending: (() => void)[] = [];
  const done = (async () => {
    for await (const s of queue) {
      await new Promise<void>((r) => pending.push(r));
      events.push(`size ${s.width}x${s.height}`);
    }
  })();
  return {
    done,
    /** Lets the resize in flight finish. */
    finishOne: async () => {
      await until(() => pending.length > 0);
      pending.shift()!();
    },
  };
}

async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setImmediate(r));
}

const size = (width: number, height: number): TerminalSize => ({ width, height });

test("input sent after a size waits until that size is applied", async () => {
  const queue = new ResizeQueue();
  const term = terminal();
  const input = new PassThrough();
  const resizer = slowResizer(queue, term.events);
  feedStdin(input, term.sink, { onEnd: async () => {}, holdUntil: () => queue.settled() });

  queue.push(size(100, 30));
  input.write("stty size\n");
  input.write("echo ok\n");
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(term.events, [], "no input may reach the terminal before the size it follows");

  await resizer.finishOne();
  await until(() => term.events.length === 3);
  assert.deepEqual(term.events, ["size 100x30", "input stty size\n", "input echo ok\n"]);
  queue.end();
  await resizer.done;
});

test("input with no size pending goes straight through, and a later size holds later input only", async () => {
  const queue = new ResizeQueue();
  const term = terminal();
  const input = new PassThrough();
  const resizer = slowResizer(queue, term.events);
  feedStdin(input, term.sink, { onEnd: async () => {}, holdUntil: () => queue.settled() });

  input.write("a");
  await until(() => term.events.length === 1);
  queue.push(size(80, 24));
  input.write("b");
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(term.events, ["input a"]);
  await resizer.finishOne();
  await until(() => term.events.length === 3);
  assert.deepEqual(term.events, ["input a", "size 80x24", "input b"]);
  queue.end();
  await resizer.done;
});

test("the end of input comes after held input, and a consumer that stops releases the hold", async () => {
  const queue = new ResizeQueue();
  const term = terminal();
  const input = new PassThrough();
  let ended = false;
  const sizes = queue[Symbol.asyncIterator]();
  feedStdin(input, term.sink, {
    onEnd: async () => {
      term.events.push("end");
      ended = true;
    },
    holdUntil: () => queue.settled(),
  });

  queue.push(size(120, 40));
  void sizes.next(); // the consumer took the size and is applying it
  input.end("last line\n");
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(term.events, []);
  await sizes.return!(undefined); // the session is over: it will never come back for more
  await until(() => ended);
  assert.deepEqual(term.events, ["input last line\n", "end"]);
});

test("a full sink pauses the input until it drains, held or not", async () => {
  const queue = new ResizeQueue();
  const term = terminal();
  const input = new PassThrough();
  feedStdin(input, term.sink, { onEnd: async () => {}, holdUntil: () => queue.settled() });
  term.fill();
  input.write("1");
  await until(() => term.events.length === 1);
  input.write("2");
  await new Promise((r) => setImmediate(r));
  assert.equal(input.isPaused(), true);
  assert.deepEqual(term.events, ["input 1"]);
  term.drain();
  await until(() => term.events.length === 2);
  assert.deepEqual(term.events, ["input 1", "input 2"]);
});

test("detaching stops the copy, including input that was held", async () => {
  const queue = new ResizeQueue();
  const term = terminal();
  const input = new PassThrough();
  const resizer = slowResizer(queue, term.events);
  const detach = feedStdin(input, term.sink, { onEnd: async () => {}, holdUntil: () => queue.settled() });
  queue.push(size(10, 10));
  input.write("late");
  await new Promise((r) => setImmediate(r));
  detach();
  await resizer.finishOne();
  queue.end();
  await resizer.done;
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(term.events, ["size 10x10"]);
});
