// A process Create already ran (berthd's start-at-once metadata, src/shim/service.ts): it looks
// created until the Start that confirms it, and its exit, which can come at once, is held by
// the watcher (TaskEvents.exited) until that Start opened the gate, or a Kill or Delete did.
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";

import { Status } from "../../../src/gen/containerd/types/task/task.js";
import type { EventEncoder, Publisher } from "../../../src/shim/events.js";
import { processStateDir } from "../../../src/shim/paths.js";
import { Proc, loadRecord, saveRecord, type ProcessRecord } from "../../../src/shim/process.js";
import { TaskService } from "../../../src/shim/service.js";
import { holdAfterRestart } from "../../../src/shim/start-at-once.js";
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

// A shim restarted between Create and Start (reattach.ts) finds the fact in the record. The
// runtime here is `true` (every runtime command succeeds and says nothing) and no monitor
// runs: the adopted monitor's records on disk ("exit") say the process already ended.
describe("a process Create ran, after a restart of the serving shim", () => {
  /** The state a killed shim leaves: the record, and the exit its monitor wrote. */
  async function leftBehind(name: string, o: Partial<ProcessRecord>, exitStatus?: number) {
    const root = join(dir, name);
    const stateDir = processStateDir(root, "g", "c1", "");
    mkdirSync(stateDir, { recursive: true });
    const r = record({ pid: 999_999, runtime: { ...record().runtime, binary: "true" }, ...o });
    await saveRecord(stateDir, r);
    if (exitStatus !== undefined) writeFileSync(join(stateDir, "exit"), `${exitStatus} 1 0\n`);
    const pub = recorder();
    const service = new TaskService({
      root,
      group: "g",
      namespace: "test",
      publisher: pub,
      monitorBin: "/nonexistent/berth-monitor",
      log: () => {},
      onEmpty: () => {},
      primer: { prime: async () => {} },
    });
    return { service, pub, stateDir };
  }
  const md = { id: "c1", execId: "" };

  test("is created again; its exit, from before the restart, is told after the Start that confirms it", async () => {
    const { service, pub } = await leftBehind("restarted", { startedAtCreate: true }, 5);
    // the re-adoption does not wait for the held exit
    assert.equal(await service.adopt(), 1);
    await settle();
    assert.equal((await service.state(md)).status, Status.CREATED);
    assert.deepEqual(pub.topics, []);
    assert.equal((await service.start(md)).pid, 999_999);
    assert.equal((await service.wait(md)).exitStatus, 5);
    assert.deepEqual(pub.topics, ["/tasks/start", "/tasks/exit"]);
    assert.equal((await service.state(md)).status, Status.STOPPED);
    await assert.rejects(service.start(md), /already started/);
  });

  test("deleted without a Start, it lets its exit through and leaves no state dir", async () => {
    const { service, pub, stateDir } = await leftBehind("dropped", { startedAtCreate: true }, 137);
    await service.adopt();
    assert.equal((await service.delete(md)).exitStatus, 137);
    assert.deepEqual(pub.topics, ["/tasks/exit", "/tasks/delete"]);
    assert.equal(existsSync(stateDir), false);
    assert.equal(service.taskCount, 0);
  });

  test("a Kill before the restart let its exit through: it is not held again", async () => {
    const { service, pub } = await leftBehind("killed", { startedAtCreate: true, exitBeforeStart: true }, 137);
    await service.adopt();
    // Not held: the exit comes without a Start (waited for, not slept on: adoption reads files).
    assert.equal((await service.wait(md)).exitStatus, 137);
    assert.equal((await service.state(md)).status, Status.STOPPED);
    assert.deepEqual(pub.topics, ["/tasks/exit"]);
  });

  test("a Kill writes that to the record before it lets the exit through; a confirmed Start or a plain create holds nothing", async () => {
    const stateDir = join(dir, "kill-record");
    const p = new Proc(record({ startedAtCreate: true }), stateDir);
    p.holdUntilStart();
    await p.releaseBeforeStart();
    const saved = await loadRecord(stateDir);
    assert.equal(saved?.exitBeforeStart, true);
    const again = new Proc(saved!, stateDir);
    holdAfterRestart(again);
    assert.equal(again.starting, undefined);

    const fresh = new Proc(record({ startedAtCreate: true }), stateDir);
    holdAfterRestart(fresh);
    assert.notEqual(fresh.starting, undefined);
    for (const o of [{}, { startedAtCreate: true, started: true }]) {
      const p = new Proc(record(o), stateDir);
      holdAfterRestart(p);
      assert.equal(p.starting, undefined);
    }
  });
});
