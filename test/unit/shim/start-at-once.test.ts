// A process Create already ran (berthd's start-at-once metadata, src/shim/service.ts): it looks
// created until the Start that confirms it, and its exit, which can come at once, is held by
// the watcher (TaskEvents.exited) until that Start opened the gate, or a Kill or Delete did.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";

import { Status } from "../../../src/gen/containerd/types/task/task.js";
import type { EventEncoder, Publisher } from "../../../src/shim/events.js";
import { Proc, type ProcessRecord } from "../../../src/shim/process.js";
import type { Task } from "../../../src/shim/task.js";
import { TaskEvents } from "../../../src/shim/task-events.js";
import { processRecord } from "./fixtures.js";

const dir = mkdtempSync(join(tmpdir(), "berth-at-once-"));
after(() => rmSync(dir, { recursive: true, force: true }));

const record = (o: Partial<ProcessRecord> = {}): ProcessRecord => processRecord({ pid: 42, ...o });

/** A publisher that keeps the topics it was given. */
function recorder(): Publisher & { topics: string[] } {
  const topics: string[] = [];
  return {
    topics,
    publish<T>(_ns: string, topic: string, _type: string, _codec: EventEncoder<T>, _event: T) {
      topics.push(topic);
    },
    close: async () => {},
  };
}

function setup(name: string) {
  const proc = new Proc(record({ startedAtCreate: true }), join(dir, name));
  const pub = recorder();
  const events = new TaskEvents(pub, () => {});
  const task = { id: "c1", namespace: "test", logFd: undefined, init: proc } as unknown as Task;
  return { proc, pub, events, task };
}

const exit = (status: number) => ({ status, seconds: 1n, nanos: 0 });

/** Lets every pending promise and the watcher's file writes run. */
const settle = () => new Promise((r) => setTimeout(r, 20));

describe("a process Create ran", () => {
  test("awaits its confirming Start until the record says started; an exec or a plain create never does", () => {
    const p = new Proc(record({ startedAtCreate: true }), "/nonexistent");
    assert.equal(p.awaitingStart, true);
    assert.equal(p.status, Status.CREATED);
    p.record.started = true;
    assert.equal(p.awaitingStart, false);
    assert.equal(new Proc(record(), "/nonexistent").awaitingStart, false);
    assert.equal(new Proc(record({ execId: "e1", startedAtCreate: true }), "/nonexistent").awaitingStart, false);
  });

  test("its exit is held while the gate is closed, then moves it to stopped and is published", async () => {
    const { proc, pub, events, task } = setup("held");
    proc.holdUntilStart();
    const watched = events.exited(task, proc, exit(5));
    await settle();
    assert.equal(proc.exit, undefined);
    assert.equal(proc.state, "created");
    assert.deepEqual(pub.topics, []);
    // the confirming Start: the process is moved on, then the gate opens
    proc.record.started = true;
    proc.to("start");
    proc.openStartGate();
    await watched;
    assert.equal(proc.state, "stopped");
    assert.equal((await proc.wait()).status, 5);
    assert.deepEqual(pub.topics, ["/tasks/exit"]);
  });

  test("a gate opened without a Start (a Kill or Delete) lets the exit through a created process", async () => {
    const { proc, pub, events, task } = setup("killed");
    proc.holdUntilStart();
    const watched = events.exited(task, proc, exit(137));
    proc.openStartGate();
    await watched;
    assert.equal(proc.state, "stopped");
    assert.equal(proc.can("start"), false);
    assert.deepEqual(pub.topics, ["/tasks/exit"]);
    // opening it again does nothing
    proc.openStartGate();
  });

  test("holding twice keeps one gate: one open releases every exit waiting on it", async () => {
    const { proc, events, task } = setup("twice");
    proc.holdUntilStart();
    proc.holdUntilStart();
    const watched = events.exited(task, proc, exit(0));
    proc.openStartGate();
    await watched;
    assert.equal(proc.exit?.status, 0);
  });
});
