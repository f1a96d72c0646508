// The exit monitor (src/cri/exit-monitor.ts) and the exit handling it routes to
// (container/exit.ts, sandbox/exit.ts), over a fake TaskRuntime: the exit orders the last
// fixes were about (an exit before the output drains, an OOM before the exit, a dead shim)
// and the reconciliation that catches a lost exit event.
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, test } from "node:test";
import { ContainerEventType, ContainerState, PodSandboxState } from "../../../src/gen/cri/runtime/v1/api.js";
import { ExitMonitor } from "../../../src/cri/exit-monitor.js";
import { UNKNOWN_REASON, containerView, sandboxView } from "../../../src/cri/store/index.js";
import { until } from "../../helpers/shim.js";
import { type World, addPod, addRunningContainer, exitHandled, settle, world } from "./fakes.js";

const { CONTAINER_RUNNING: RUNNING, CONTAINER_EXITED: EXITED } = ContainerState;

describe("exit monitor", () => {
  let w: World;
  let monitor: ExitMonitor;
  /** Every state the container was reported in, in order (recorded on each store change). */
  let reported: { state: ContainerState; reason: string }[];

  beforeEach(() => {
    w = world();
    monitor = new ExitMonitor(w.containers, w.sandboxes, 60_000);
    reported = [];
    const store = w.containers.store;
    const apply = store.apply.bind(store);
    store.apply = (id, ev) => {
      const s = apply(id, ev);
      if (s) {
        const v = containerView(s);
        reported.push({ state: v.state, reason: v.reason });
      }
      return s;
    };
  });
  afterEach(() => {
    monitor.close();
    w.close();
  });

  const view = (id: string) => containerView(w.containers.store.get(id)!.status);

  test("an exit is reported EXITED only after the output drained, then the task is deleted", async () => {
    const pod = addPod(w);
    const { id, logger } = addRunningContainer(w, pod);
    w.runtime.tasks.set(id, { status: "stopped", pid: 200, exitStatus: 3, exitedAt: new Date(1000) });
    w.runtime.emit({ type: "exit", containerId: id, exitStatus: 3, exitedAt: new Date(1000), pid: 200 });
    await settle();
    assert.equal(view(id).state, RUNNING, "reported EXITED before its output drained");
    assert.ok(!w.runtime.calls.includes(`delete ${id}`));
    logger.drain();
    await exitHandled(w, id);
    assert.deepEqual(
      { ...view(id) },
      {
        state: EXITED,
        exitCode: 3,
        finishedAt: 1_000_000_000n,
        reason: "Error",
        message: "",
      },
    );
    assert.ok(logger.closed());
    assert.ok(w.runtime.calls.includes(`delete ${id}`));
    assert.equal(w.containers.store.get(id)!.status.exitFinal, true);
    const stopped = w.events.filter((e) => e.containerId === id);
    assert.deepEqual(
      stopped.map((e) => e.containerEventType),
      [ContainerEventType.CONTAINER_STOPPED_EVENT],
    );
    assert.equal(stopped[0]!.containersStatuses[0]!.state, EXITED);
  });

  test("an OOM before the exit: OOMKilled is settled before EXITED (never Error, then OOMKilled)", async () => {
    const pod = addPod(w);
    const { id, logger } = addRunningContainer(w, pod);
    w.runtime.emit({ type: "oom", containerId: id });
    w.runtime.tasks.set(id, { status: "stopped", pid: 200, exitStatus: 137 });
    w.runtime.emit({ type: "exit", containerId: id, exitStatus: 137, pid: 200 });
    logger.drain();
    await exitHandled(w, id);
    assert.equal(view(id).state, EXITED);
    assert.equal(view(id).reason, "OOMKilled");
    assert.ok(
      reported.every((r) => r.state !== EXITED || r.reason === "OOMKilled"),
      `reported: ${JSON.stringify(reported)}`,
    );
  });

  test("a dead shim's exit shows at once, without waiting for the output", async () => {
    const pod = addPod(w);
    const { id, logger } = addRunningContainer(w, pod);
    w.runtime.tasks.set(id, { status: "stopped", pid: 200, exitStatus: 255, reason: "the shim died" });
    w.runtime.emit({ type: "exit", containerId: id, exitStatus: 255, pid: 200, reason: "the shim died" });
    // Synchronously: the logger never drains (the shim holding the fifos is gone).
    assert.deepEqual(
      { state: view(id).state, exitCode: view(id).exitCode, reason: view(id).reason, message: view(id).message },
      { state: EXITED, exitCode: 255, reason: UNKNOWN_REASON, message: "the shim died" },
    );
    logger.drain();
    await exitHandled(w, id);
    assert.equal(view(id).reason, UNKNOWN_REASON, "the settled exit keeps the reason");
    assert.equal(w.containers.store.get(id)!.status.exitFinal, true);
  });

  test("a stale exit (the shim says the task runs) leaves it RUNNING", async () => {
    const pod = addPod(w);
    const { id } = addRunningContainer(w, pod);
    w.runtime.emit({ type: "exit", containerId: id, exitStatus: 0, pid: 200 });
    await exitHandled(w, id);
    assert.equal(view(id).state, RUNNING);
    assert.equal(w.containers.store.get(id)!.status.exitHeard, undefined);
    assert.ok(w.runtime.tasks.has(id));
  });

  test("exec exits and other namespaces are not container exits", async () => {
    const pod = addPod(w);
    const { id, logger } = addRunningContainer(w, pod);
    logger.drain();
    w.runtime.tasks.set(id, { status: "stopped", pid: 200, exitStatus: 0 });
    w.runtime.emit({ type: "exit", containerId: id, execId: "e1", exitStatus: 0, pid: 300 });
    w.runtime.emit({ type: "exit", containerId: id, namespace: "moby", exitStatus: 0, pid: 200 });
    await settle();
    assert.equal(view(id).state, RUNNING);
  });

  test("a sandbox exit makes the pod NOTREADY, recorded, its task deleted, CONTAINER_STOPPED sent", async () => {
    const pod = addPod(w);
    w.runtime.tasks.set(pod, { status: "stopped", pid: 100, exitStatus: 0, exitedAt: new Date(2000) });
    w.runtime.emit({ type: "exit", containerId: pod, exitStatus: 0, pid: 100 });
    assert.equal(sandboxView(w.sandboxes.store.get(pod)!.status).state, PodSandboxState.SANDBOX_NOTREADY);
    await until(
      () => w.events.some((e) => e.containerId === pod),
      "the sandbox exit handled (its CONTAINER_STOPPED event)",
    );
    assert.equal(w.sandboxes.store.get(pod)!.status.exitedAt, 2_000_000_000n);
    assert.ok(!w.runtime.tasks.has(pod));
    assert.deepEqual(
      w.events.filter((e) => e.containerId === pod).map((e) => e.containerEventType),
      [ContainerEventType.CONTAINER_STOPPED_EVENT],
    );
  });

  test("reconciliation: a lost container exit event is caught", async () => {
    const pod = addPod(w);
    const { id, logger } = addRunningContainer(w, pod);
    logger.drain();
    w.runtime.tasks.set(id, { status: "stopped", pid: 200, exitStatus: 0 }); // no event
    await settle();
    assert.equal(view(id).state, RUNNING);
    await monitor.reconcile();
    await exitHandled(w, id);
    assert.equal(view(id).state, EXITED);
    assert.equal(view(id).reason, "Completed");
    assert.ok(!w.runtime.tasks.has(id));
  });

  test("reconciliation: a task gone without any exit is EXITED Unknown, never RUNNING", async () => {
    const pod = addPod(w);
    const { id } = addRunningContainer(w, pod);
    w.runtime.tasks.delete(id);
    await monitor.reconcile();
    assert.equal(view(id).state, EXITED);
    assert.equal(view(id).exitCode, 255);
    assert.equal(view(id).reason, UNKNOWN_REASON);
  });

  test("reconciliation: a lost sandbox exit makes the pod NOTREADY", async () => {
    const pod = addPod(w);
    w.runtime.tasks.set(pod, { status: "stopped", pid: 100, exitStatus: 0 });
    await monitor.reconcile();
    await until(() => w.sandboxes.store.get(pod)!.status.exitedAt > 0n, "the lost sandbox exit handled");
    const s = w.sandboxes.store.get(pod)!.status;
    assert.equal(sandboxView(s).state, PodSandboxState.SANDBOX_NOTREADY);
    assert.ok(s.exitedAt > 0n);
  });

  test("reconciliation: a shim that does not answer decides nothing; one that answers again clears UNKNOWN", async () => {
    const pod = addPod(w);
    const { id } = addRunningContainer(w, pod);
    w.containers.store.apply(id, { type: "unknown" });
    w.runtime.tasks.get(id)!.silent = true;
    await monitor.reconcile();
    assert.equal(view(id).state, ContainerState.CONTAINER_UNKNOWN);
    w.runtime.tasks.get(id)!.silent = false;
    await monitor.reconcile();
    assert.equal(view(id).state, RUNNING);
  });

  test("reconciliation leaves running tasks alone and asks nothing of exited ones", async () => {
    const pod = addPod(w);
    const a = addRunningContainer(w, pod);
    const b = addRunningContainer(w, pod);
    w.containers.store.apply(b.id, {
      type: "task-deleted",
      exit: { exitCode: 0, finishedAt: 1n, reason: "Completed", message: "" },
    });
    await monitor.reconcile();
    assert.equal(view(a.id).state, RUNNING);
    assert.ok(w.runtime.calls.includes(`state ${a.id}`));
    assert.ok(!w.runtime.calls.includes(`state ${b.id}`));
  });
});
