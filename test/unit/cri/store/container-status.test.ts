// Every transition of a container's status record (src/cri/store/container-status.ts), and
// what ContainerStatus reports for each record. Table-driven: a starting record, one event,
// the expected record fields and reported state.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ContainerState } from "../../../../src/gen/cri/runtime/v1/api.js";
import {
  type ContainerEvent,
  type ContainerStatus,
  UNKNOWN_REASON,
  believedRunning,
  containerTransition,
  containerView,
  exitReason,
  initialContainerStatus,
} from "../../../../src/cri/store/index.js";

const exit = (exitCode: number, reason = "") => ({ exitCode, finishedAt: 10n, reason, message: "" });
const creating = initialContainerStatus();
const created: ContainerStatus = { ...creating, phase: "created" };
const running: ContainerStatus = { ...created, startedAt: 5n };
const draining: ContainerStatus = { ...running, exitHeard: exit(1) };
const exited: ContainerStatus = { ...running, exit: exit(1, "Error") };
const final: ContainerStatus = { ...exited, exitFinal: true };
const unknown: ContainerStatus = { ...running, unknown: true };
const { CONTAINER_CREATED: CREATED, CONTAINER_RUNNING: RUNNING, CONTAINER_EXITED: EXITED } = ContainerState;
const UNKNOWN = ContainerState.CONTAINER_UNKNOWN;

interface Row {
  name: string;
  from: ContainerStatus;
  ev: ContainerEvent;
  want: Partial<ContainerStatus>;
  state: ContainerState;
  reason?: string;
}

const rows: Row[] = [
  {
    name: "created: creating -> CREATED",
    from: creating,
    ev: { type: "created" },
    want: { phase: "created" },
    state: CREATED,
  },
  {
    name: "started: CREATED -> RUNNING",
    from: created,
    ev: { type: "started", at: 5n },
    want: { startedAt: 5n },
    state: RUNNING,
  },
  {
    name: "started after an exit handled before Start returned keeps the exit",
    from: { ...created, exit: exit(0, "Completed"), exitFinal: true },
    ev: { type: "started", at: 5n },
    want: { startedAt: 5n },
    state: EXITED,
    reason: "Completed",
  },
  {
    name: "started twice keeps the first time",
    from: running,
    ev: { type: "started", at: 9n },
    want: { startedAt: 5n },
    state: RUNNING,
  },
  {
    name: "start failed: exit 128 StartError, settled",
    from: created,
    ev: { type: "start-failed", at: 7n, message: "boom" },
    want: { exit: { exitCode: 128, finishedAt: 7n, reason: "StartError", message: "boom" }, exitFinal: true },
    state: EXITED,
    reason: "StartError",
  },
  {
    name: "exit heard: still RUNNING while the output drains",
    from: running,
    ev: { type: "exit-heard", exit: exit(1), shimDead: false },
    want: { exitHeard: exit(1), exit: undefined },
    state: RUNNING,
  },
  {
    name: "exit heard twice keeps the first",
    from: draining,
    ev: { type: "exit-heard", exit: exit(2), shimDead: false },
    want: { exitHeard: exit(1) },
    state: RUNNING,
  },
  {
    name: "exit heard from a dead shim: EXITED Unknown at once",
    from: draining,
    ev: { type: "exit-heard", exit: { ...exit(255), message: "shim died" }, shimDead: true },
    want: {
      exit: { exitCode: 255, finishedAt: 10n, reason: UNKNOWN_REASON, message: "shim died" },
      exitHeard: undefined,
    },
    state: EXITED,
    reason: UNKNOWN_REASON,
  },
  {
    name: "exit heard after the exit is reported changes nothing",
    from: exited,
    ev: { type: "exit-heard", exit: exit(3), shimDead: true },
    want: { exit: exit(1, "Error") },
    state: EXITED,
    reason: "Error",
  },
  { name: "OOM seen", from: running, ev: { type: "oom" }, want: { oom: true }, state: RUNNING },
  {
    name: "OOM after the exit settled is ignored",
    from: final,
    ev: { type: "oom" },
    want: { oom: false },
    state: EXITED,
    reason: "Error",
  },
  {
    name: "output drained: EXITED with the settled reason",
    from: { ...draining, oom: true },
    ev: { type: "output-drained", exit: exit(137, "OOMKilled") },
    want: { exit: exit(137, "OOMKilled"), exitHeard: undefined, exitFinal: false },
    state: EXITED,
    reason: "OOMKilled",
  },
  {
    name: "output drained clears UNKNOWN",
    from: unknown,
    ev: { type: "output-drained", exit: exit(0, "Completed") },
    want: { unknown: false },
    state: EXITED,
    reason: "Completed",
  },
  {
    name: "task deleted settles the exit",
    from: { ...exited, oom: true },
    ev: { type: "task-deleted", exit: exit(2, "Error") },
    want: { exit: exit(2, "Error"), exitFinal: true, oom: false },
    state: EXITED,
  },
  {
    name: "a settled exit never changes",
    from: final,
    ev: { type: "task-deleted", exit: exit(9, "Error") },
    want: { exit: exit(1, "Error") },
    state: EXITED,
  },
  {
    name: "output drained after the exit settled changes nothing",
    from: final,
    ev: { type: "output-drained", exit: exit(9, "Error") },
    want: { exit: exit(1, "Error") },
    state: EXITED,
  },
  {
    name: "still running drops a stale exit",
    from: draining,
    ev: { type: "still-running" },
    want: { exitHeard: undefined },
    state: RUNNING,
  },
  {
    name: "still running drops UNKNOWN",
    from: unknown,
    ev: { type: "still-running" },
    want: { unknown: false },
    state: RUNNING,
  },
  {
    name: "still running after an exit changes nothing",
    from: exited,
    ev: { type: "still-running" },
    want: { exit: exit(1, "Error") },
    state: EXITED,
  },
  {
    name: "unknown: shim silent at recovery",
    from: running,
    ev: { type: "unknown" },
    want: { unknown: true },
    state: UNKNOWN,
    reason: UNKNOWN_REASON,
  },
  {
    name: "unknown after an exit changes nothing",
    from: exited,
    ev: { type: "unknown" },
    want: { unknown: false },
    state: EXITED,
  },
  {
    name: "removing keeps the state",
    from: running,
    ev: { type: "removing" },
    want: { phase: "removing" },
    state: RUNNING,
  },
  {
    name: "removing an exited container",
    from: final,
    ev: { type: "removing" },
    want: { phase: "removing" },
    state: EXITED,
  },
];

describe("container status transitions", () => {
  for (const r of rows) {
    test(r.name, () => {
      const next = containerTransition(r.from, r.ev);
      for (const [k, v] of Object.entries(r.want)) assert.deepEqual(next[k as keyof ContainerStatus], v, k);
      const view = containerView(next);
      assert.equal(view.state, r.state);
      if (r.reason !== undefined) assert.equal(view.reason, r.reason);
    });
  }

  test("an event that changes nothing returns the same record (nothing to persist)", () => {
    assert.equal(containerTransition(running, { type: "started", at: 9n }), running);
    assert.equal(containerTransition(final, { type: "oom" }), final);
    assert.equal(containerTransition(created, { type: "created" }), created);
  });

  test("the exit order fixed in a57be6d: exit heard, then drained, then deleted", () => {
    let s = running;
    const seen: ContainerState[] = [];
    for (const ev of [
      { type: "exit-heard", exit: exit(0), shimDead: false },
      { type: "output-drained", exit: exit(0, "Completed") },
      { type: "task-deleted", exit: exit(0, "Completed") },
    ] as ContainerEvent[]) {
      s = containerTransition(s, ev);
      seen.push(containerView(s).state);
    }
    assert.deepEqual(seen, [RUNNING, EXITED, EXITED]);
  });

  test("a record loaded from a row with an exit is settled", () => {
    const s = initialContainerStatus({ phase: "created", startedAt: 5n, exit: exit(1, "Error") });
    assert.equal(s.exitFinal, true);
    assert.equal(containerView(s).state, EXITED);
  });

  test("believed running: started, no exit known or heard (UNKNOWN included)", () => {
    assert.equal(believedRunning(running), true);
    assert.equal(believedRunning(unknown), true);
    assert.equal(believedRunning(created), false);
    assert.equal(believedRunning(draining), false);
    assert.equal(believedRunning(exited), false);
  });

  test("exit reasons", () => {
    assert.equal(exitReason(0, false), "Completed");
    assert.equal(exitReason(1, false), "Error");
    assert.equal(exitReason(0, true), "OOMKilled");
    assert.equal(exitReason(137, true), "OOMKilled");
  });
});
