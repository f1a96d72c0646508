// The shim's process state table (src/shim/process-state.ts) and the Proc that follows it
// (src/shim/process.ts). Table-driven: for each kind of process, every state crossed with
// every event is either an allowed transition with its target, or refused with
// FailedPreconditionError. The expectations are written out here, not read from the table.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { Status } from "../../../src/gen/containerd/types/task/task.js";
import {
  PROCESS_EVENTS,
  PROCESS_STATES,
  type ProcessEvent,
  type ProcessKind,
  type ProcessState,
  next,
  statusOf,
  transition,
} from "../../../src/shim/process-state.js";
import { Proc, type ProcessRecord } from "../../../src/shim/process.js";
import { FailedPreconditionError } from "../../../src/util/errors.js";
import { processRecord } from "./fixtures.js";

/** "from event" -> to; every pair not listed must be refused. */
const ALLOWED: Record<ProcessKind, Record<string, ProcessState>> = {
  init: {
    "created start": "running",
    "created exit": "stopped",
    "created delete": "deleted",
    "created adoptRunning": "running",
    "created adoptPaused": "paused",
    "running pause": "pausing",
    "running exit": "stopped",
    "pausing paused": "paused",
    "pausing pauseFailed": "running",
    "pausing exit": "stopped",
    "paused resume": "running",
    "paused exit": "stopped",
    "stopped delete": "deleted",
  },
  exec: {
    "created start": "running",
    "created exit": "stopped",
    "created delete": "deleted",
    "created adoptRunning": "running",
    "running exit": "stopped",
    "stopped delete": "deleted",
  },
};

for (const kind of ["init", "exec"] as const) {
  describe(`${kind} process transitions`, () => {
    for (const from of PROCESS_STATES) {
      for (const event of PROCESS_EVENTS) {
        const want = ALLOWED[kind][`${from} ${event}`];
        test(`${from} --${event}--> ${want ?? "refused"}`, () => {
          assert.equal(transition(kind, from, event), want);
          if (want) assert.equal(next(kind, from, event), want);
          else assert.throws(() => next(kind, from, event), FailedPreconditionError);
        });
      }
    }
  });
}

test("every allowed pair names a known state and event", () => {
  for (const kind of ["init", "exec"] as const) {
    for (const key of Object.keys(ALLOWED[kind])) {
      const [from, event] = key.split(" ") as [ProcessState, ProcessEvent];
      assert.ok(PROCESS_STATES.includes(from), key);
      assert.ok(PROCESS_EVENTS.includes(event), key);
    }
  }
});

test("states report containerd's task Status; a deleted process reports stopped", () => {
  assert.equal(statusOf("created"), Status.CREATED);
  assert.equal(statusOf("running"), Status.RUNNING);
  assert.equal(statusOf("pausing"), Status.PAUSING);
  assert.equal(statusOf("paused"), Status.PAUSED);
  assert.equal(statusOf("stopped"), Status.STOPPED);
  assert.equal(statusOf("deleted"), Status.STOPPED);
});

const record = (execId = ""): ProcessRecord => processRecord({ execId });

const exit = (status: number) => ({ status, seconds: 1n, nanos: 0 });

describe("Proc", () => {
  test("an exec record makes an exec process, with the exec table", () => {
    const p = new Proc(record("e1"), "/nonexistent");
    assert.equal(p.kind, "exec");
    assert.equal(p.can("pause"), false);
    assert.throws(() => p.to("pause"), FailedPreconditionError);
    assert.equal(p.state, "created");
  });

  test("init: created -> running -> pausing -> paused -> running, with Status to match", () => {
    const p = new Proc(record(), "/nonexistent");
    assert.equal(p.kind, "init");
    assert.equal(p.status, Status.CREATED);
    for (const [event, state, status] of [
      ["start", "running", Status.RUNNING],
      ["pause", "pausing", Status.PAUSING],
      ["paused", "paused", Status.PAUSED],
      ["resume", "running", Status.RUNNING],
    ] as const) {
      p.to(event);
      assert.equal(p.state, state);
      assert.equal(p.status, status);
    }
  });

  test("a refused event leaves the state as it was", () => {
    const p = new Proc(record(), "/nonexistent");
    assert.throws(() => p.to("resume"), FailedPreconditionError);
    assert.equal(p.state, "created");
  });

  for (const live of ["created", "running", "pausing", "paused"] as const) {
    test(`an exit while ${live} stops the process and wakes its waiters once`, async () => {
      const p = new Proc(record(), "/nonexistent");
      const path: Record<typeof live, ProcessEvent[]> = {
        created: [],
        running: ["start"],
        pausing: ["start", "pause"],
        paused: ["start", "pause", "paused"],
      };
      for (const e of path[live]) p.to(e);
      assert.equal(p.state, live);
      const waited = p.wait();
      p.setExited(exit(3));
      p.setExited(exit(9)); // a second exit changes nothing
      assert.equal(p.state, "stopped");
      assert.equal(p.status, Status.STOPPED);
      assert.equal((await waited).status, 3);
      assert.equal(p.exit?.status, 3);
      assert.equal((await p.wait()).status, 3);
    });
  }

  test("an exit heard after delete keeps the process deleted", () => {
    const p = new Proc(record(), "/nonexistent");
    p.to("delete");
    p.setExited(exit(0));
    assert.equal(p.state, "deleted");
    assert.equal(p.exit?.status, 0);
  });

  test("a stopped process can only be deleted", () => {
    const p = new Proc(record(), "/nonexistent");
    p.to("start");
    p.setExited(exit(0));
    for (const e of PROCESS_EVENTS) assert.equal(p.can(e), e === "delete", e);
    p.to("delete");
    for (const e of PROCESS_EVENTS) assert.equal(p.can(e), false, `deleted: ${e}`);
  });
});
