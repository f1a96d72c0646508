// A Kill or Delete that reaches berth's shim while the task's Create is still running its OCI
// runtime command: as when berthd is SIGKILLed mid-RunPodSandbox and the restarted berthd's
// recovery rolls the pod back (kill, wait, delete) while the old Create goes on in the shim.
// The call waits for the Create, then acts on the process it started: a Kill before it would
// signal nothing, the Create would then start a process nobody stops, and the Wait that follows
// would never return (the random-kill reliability test caught that, as a berthd that never
// opened its socket). Real shim, monitors and runc; a wrapper holds runc's `run`/`create` until
// the test lets it go, so the overlap is certain, not timed.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

import { START_AT_ONCE_METADATA_KEY, START_CONFIRMED_METADATA_KEY } from "../../src/shim/start-at-once.js";
import { makeBundle } from "../helpers/bundle.js";
import { ShimHarness, alive, until, type TaskClient } from "../helpers/shim.js";

let h: ShimHarness;
let task: TaskClient;
let gate: string;
let wrapper: string;

before(async () => {
  h = await ShimHarness.create("berth-kill-in-create");
  gate = join(h.root, "gate");
  wrapper = join(h.root, "held-runc");
  // Holds a `run` or `create` until <gate>/release exists, after saying it got there.
  writeFileSync(
    wrapper,
    `#!/bin/sh
case " $* " in
  *" run "*|*" create "*)
    touch "${gate}/entered"
    while [ ! -e "${gate}/release" ]; do sleep 0.01; done ;;
esac
exec runc "$@"
`,
  );
  chmodSync(wrapper, 0o755);
  const b = join(h.root, "first");
  makeBundle(b, { args: ["true"] });
  ({ task } = await h.connect(h.start(b, "first")));
});

after(async () => {
  await h.cleanup();
});

const createReq = (id: string, args = ["sleep", "1000"]) => h.createRequest(id, args, { binaryName: wrapper });

/** What berthd sends: a Create that runs the task at once and needs no Start. */
const confirmed = () => ({
  metadata: { ...h.md.metadata, [START_AT_ONCE_METADATA_KEY]: "1", [START_CONFIRMED_METADATA_KEY]: "1" },
});

function closeGate(): void {
  rmSync(gate, { recursive: true, force: true });
  mkdirSync(gate);
}

const release = () => writeFileSync(join(gate, "release"), "");

/**
 * Returns once the shim has taken in the call sent just before on the same connection: the shim
 * reads one connection's requests in order and starts each handler as it reads it, so this
 * Connect is answered only after that call is under way (here, while the Create is held).
 */
async function inShim(id: string): Promise<void> {
  await task.connect({ id }, h.md);
}

/**
 * Runs `body` with a Create held in runc's command; the gate is opened whatever happens, so a
 * failing check never leaves a Create (and the test) waiting for good.
 */
async function withHeldCreate(
  req: ReturnType<typeof createReq>,
  md: { metadata: Record<string, string> },
  body: (created: Promise<{ pid: number }>) => Promise<void>,
): Promise<void> {
  closeGate();
  const created = task.create(req, md);
  created.catch(() => {}); // the body awaits it; a rejection before then is not unhandled
  try {
    await until(() => existsSync(join(gate, "entered")), "the runtime command to start");
    await body(created);
  } finally {
    release();
  }
}

for (const [kind, id, md] of [
  ["started at once (berthd's Create)", "killed-at-once", confirmed],
  ["created only", "killed-created", () => h.md],
] as const) {
  test(`a Kill during the Create of a task ${kind} ends the process that Create started`, async () => {
    await withHeldCreate(createReq(id), md(), async (created) => {
      const killed = task.kill({ id, execId: "", signal: 9, all: true }, h.md);
      await inShim(id);
      release();
      const { pid } = await created;
      await killed;
      // Bounded, so that the old behaviour (a process nobody signalled) fails here and does
      // not hang in the Wait below.
      await until(() => !alive(pid), "the process the Create started to be killed");
      assert.equal((await task.wait({ id, execId: "" }, h.md)).exitStatus, 137);
      await task.delete({ id, execId: "" }, h.md);
      assert.equal(existsSync(join(h.runcRoot, id)), false);
    });
  });
}

test("a Delete during the Create of a created task removes what the Create made", async () => {
  const id = "deleted-created";
  await withHeldCreate(createReq(id), h.md, async (created) => {
    const deleted = task.delete({ id, execId: "" }, h.md);
    await inShim(id);
    release();
    const { pid } = await created;
    await deleted;
    await until(() => !alive(pid), "runc's init to be gone");
    await assert.rejects(task.state({ id, execId: "" }, h.md), /not found/);
    assert.equal(existsSync(join(h.runcRoot, id)), false);
  });
});

test("a Kill during a Create that fails answers NotFound and leaves nothing", async () => {
  const id = "failed";
  await withHeldCreate(createReq(id, ["/no/such/binary"]), confirmed(), async (created) => {
    const killed = task.kill({ id, execId: "", signal: 9, all: true }, h.md);
    await inShim(id);
    release();
    await assert.rejects(created, /no such file or directory|not found/i);
    await assert.rejects(killed, /not found/);
    assert.equal(existsSync(join(h.runcRoot, id)), false);
  });
});
