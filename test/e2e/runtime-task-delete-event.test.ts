// A task's TaskDelete reaches the manager's subscribers exactly once, whether its shim sends
// it or not. containerd 2.4's runc shim queues TaskDelete while answering Delete and publishes
// it from another goroutine; the Shutdown that follows the last task's delete can win, and the
// shim then exits without sending it (seen under load). The fault is a race inside the shim,
// so it is caused here at berth's end: the events server holds the shim's TaskDelete back (the
// real envelope of containerd 1.6's shim, which always sends it before it exits), then hands
// it over late, as a shim whose publish was slow would.
import assert from "node:assert/strict";
import { test } from "node:test";
import type { Envelope } from "../../src/gen/containerd/services/ttrpc/events/v1/events.js";
import { NS, Env, alive, assertNothingLeft, until } from "../helpers/runtime-env.js";

test("a TaskDelete the shim has not sent is reported from Delete's answer, once; the shim's late copy is dropped", async () => {
  const env = await Env.create("runc");
  try {
    const m = env.manager;
    // berth's Events/Forward server, as the manager built it (src/runtime/events.ts).
    const server = (m as unknown as { events: { onEnvelope: (e: Envelope) => void } }).events;
    const deliver = server.onEnvelope;
    const held: Envelope[] = [];
    server.onEnvelope = (e) => (e.topic === "/tasks/delete" ? void held.push(e) : deliver(e));

    const bundle = env.bundle("d1", ["/bin/sh", "-c", "exit 4"]);
    await env.create({ namespace: NS, id: "d1", bundle });
    const { shimPid } = await m.connect(NS, "d1");
    await m.start(NS, "d1");
    assert.equal((await m.wait(NS, "d1")).exitStatus, 4);
    const del = await m.delete(NS, "d1");

    const deletes = () => env.events.filter((e) => e.type === "delete" && e.containerId === "d1");
    assert.equal(deletes().length, 1, "reported when Delete answered, without the shim's event");
    const d = deletes()[0]!;
    assert.ok(d.type === "delete");
    assert.deepEqual([d.pid, d.exitStatus, d.exitedAt.getTime()], [del.pid, 4, del.exitedAt.getTime()]);
    assert.deepEqual(
      env.events.filter((e) => e.type !== "unknown" && e.containerId === "d1").map((e) => e.type),
      ["create", "start", "exit", "delete"],
    );

    // The shim sent its own before exiting; handed over now, it is not reported again.
    await until(() => !alive(shimPid), "the shim to exit after Shutdown");
    await until(() => held.length === 1, "the shim's TaskDelete");
    deliver(held[0]!);
    assert.equal(deletes().length, 1, "the shim's late TaskDelete is dropped");
    await assertNothingLeft(env);
  } finally {
    await env.cleanup();
  }
});
