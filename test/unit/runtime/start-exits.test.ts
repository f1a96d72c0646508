// berthd's side of a start its shim confirmed at Create: exits held until start() collects it,
// and which shim versions confirm at all.
import { test } from "node:test";
import assert from "node:assert/strict";

import type { RuntimeEvent } from "../../../src/runtime/events.js";
import { confirmsStartAtCreate } from "../../../src/runtime/shim-features.js";
import { HeldStartExits } from "../../../src/runtime/start-exits.js";

function exit(id: string, execId = "", exitStatus = 0): RuntimeEvent {
  return {
    type: "exit",
    namespace: "k8s.io",
    topic: "/tasks/exit",
    timestamp: new Date(0),
    containerId: id,
    execId,
    pid: 42,
    exitStatus,
    exitedAt: new Date(0),
  };
}

test("an init exit of a held task waits for release, then goes out in order; others pass", () => {
  const out: RuntimeEvent[] = [];
  const h = new HeldStartExits();
  h.deliver = (ev) => out.push(ev);
  h.hold("k8s.io/a");
  assert.equal(h.offer("k8s.io/a", exit("a", "", 5)), true);
  assert.equal(h.offer("k8s.io/a", exit("a", "", 6)), true);
  // An exec's exit and another task's exit are not held.
  assert.equal(h.offer("k8s.io/a", exit("a", "e1")), false);
  assert.equal(h.offer("k8s.io/b", exit("b")), false);
  assert.equal(out.length, 0);
  h.release("k8s.io/a");
  assert.deepEqual(
    out.map((e) => (e.type === "exit" ? e.exitStatus : -1)),
    [5, 6],
  );
  // Released: later exits pass, and a second release delivers nothing again.
  assert.equal(h.offer("k8s.io/a", exit("a")), false);
  h.release("k8s.io/a");
  assert.equal(out.length, 2);
});

test("a task never held: release is a no-op", () => {
  const h = new HeldStartExits();
  let n = 0;
  h.deliver = () => n++;
  h.release("k8s.io/none");
  assert.equal(n, 0);
});

test("berth shims from 0.2 confirm a start at Create; older ones and other shims do not", () => {
  assert.equal(confirmsStartAtCreate("berth-shim 0.2.0"), true);
  assert.equal(confirmsStartAtCreate("berth-shim 0.10.1"), true);
  assert.equal(confirmsStartAtCreate("berth-shim 1.0.0"), true);
  assert.equal(confirmsStartAtCreate("berth-shim 0.1.0"), false);
  assert.equal(confirmsStartAtCreate(""), false);
  assert.equal(confirmsStartAtCreate(undefined), false);
  assert.equal(confirmsStartAtCreate("1.7.2"), false);
});
