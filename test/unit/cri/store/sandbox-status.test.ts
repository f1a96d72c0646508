// Every transition of a pod sandbox's status record (src/cri/store/sandbox-status.ts).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { PodSandboxState } from "../../../../src/gen/cri/runtime/v1/api.js";
import {
  type SandboxEvent,
  type SandboxStatus,
  initialSandboxStatus,
  sandboxBelievedRunning,
  sandboxTransition,
  sandboxView,
} from "../../../../src/cri/store/index.js";

const creating = initialSandboxStatus();
const ready: SandboxStatus = { ...creating, phase: "ready" };
const heard: SandboxStatus = { ...ready, exitHeard: true };
const recorded: SandboxStatus = { ...ready, exitedAt: 9n };
const unknown: SandboxStatus = { ...ready, unknown: true };
const stopped: SandboxStatus = { ...ready, phase: "stopped" };
const READY = PodSandboxState.SANDBOX_READY;
const NOTREADY = PodSandboxState.SANDBOX_NOTREADY;

const rows: {
  name: string;
  from: SandboxStatus;
  ev: SandboxEvent;
  want: Partial<SandboxStatus>;
  view: [PodSandboxState, string];
}[] = [
  { name: "ready", from: creating, ev: { type: "ready" }, want: { phase: "ready" }, view: [READY, "running"] },
  {
    name: "exit heard while creating is kept for later",
    from: creating,
    ev: { type: "exit-heard" },
    want: { phase: "creating", exitHeard: true },
    view: [NOTREADY, "exited"],
  },
  {
    name: "exit heard: NOTREADY at once",
    from: ready,
    ev: { type: "exit-heard" },
    want: { exitHeard: true },
    view: [NOTREADY, "exited"],
  },
  {
    name: "exit heard clears unknown",
    from: unknown,
    ev: { type: "exit-heard" },
    want: { exitHeard: true, unknown: false },
    view: [NOTREADY, "exited"],
  },
  {
    name: "exit recorded (durable)",
    from: heard,
    ev: { type: "exit-recorded", at: 9n },
    want: { exitedAt: 9n, exitHeard: false },
    view: [NOTREADY, "exited"],
  },
  {
    name: "a recorded exit keeps its time",
    from: recorded,
    ev: { type: "exit-recorded", at: 20n },
    want: { exitedAt: 9n },
    view: [NOTREADY, "exited"],
  },
  {
    name: "still running drops a stale exit",
    from: heard,
    ev: { type: "still-running" },
    want: { exitHeard: false },
    view: [READY, "running"],
  },
  {
    name: "still running drops unknown",
    from: unknown,
    ev: { type: "still-running" },
    want: { unknown: false },
    view: [READY, "running"],
  },
  {
    name: "unknown: shim silent at recovery",
    from: ready,
    ev: { type: "unknown" },
    want: { unknown: true },
    view: [NOTREADY, "unknown"],
  },
  { name: "stopped", from: ready, ev: { type: "stopped" }, want: { phase: "stopped" }, view: [NOTREADY, "deleted"] },
  {
    name: "stopped keeps a removing pod removing",
    from: { ...ready, phase: "removing" },
    ev: { type: "stopped" },
    want: { phase: "removing" },
    view: [NOTREADY, "deleted"],
  },
  {
    name: "stopped keeps a creating pod creating",
    from: creating,
    ev: { type: "stopped" },
    want: { phase: "creating" },
    view: [NOTREADY, "deleted"],
  },
  {
    name: "removing",
    from: stopped,
    ev: { type: "removing" },
    want: { phase: "removing" },
    view: [NOTREADY, "deleted"],
  },
];

describe("sandbox status transitions", () => {
  for (const r of rows) {
    test(r.name, () => {
      const next = sandboxTransition(r.from, r.ev);
      for (const [k, v] of Object.entries(r.want)) assert.deepEqual(next[k as keyof SandboxStatus], v, k);
      const v = sandboxView(next);
      assert.deepEqual([v.state, v.status], r.view);
    });
  }

  test("an event that changes nothing returns the same record", () => {
    assert.equal(sandboxTransition(ready, { type: "ready" }), ready);
    assert.equal(sandboxTransition(stopped, { type: "stopped" }), stopped);
  });

  test("believed running: ready, no exit known or heard (unknown included)", () => {
    assert.equal(sandboxBelievedRunning(ready), true);
    assert.equal(sandboxBelievedRunning(unknown), true);
    assert.equal(sandboxBelievedRunning(heard), false);
    assert.equal(sandboxBelievedRunning(recorded), false);
    assert.equal(sandboxBelievedRunning(stopped), false);
  });
});
