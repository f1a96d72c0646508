// The NRI adaptation's plugin handling, with in-process plugins on its real unix socket: plugins
// are called in index order whatever order they connected in; a plugin's error fails the hooks
// that can fail and is only logged for notifications; a plugin that does not answer in time is
// disconnected and the operation goes on; stopping tells every plugin to shut down.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";

import { Event, PluginDefinition, PodSandbox, RuntimeDefinition } from "../../src/gen/nri/api.js";
import { NriAdaptation } from "../../src/nri/adaptation.js";
import { Multiplexer, PLUGIN_SERVICE_CONN, RUNTIME_SERVICE_CONN } from "../../src/nri/mux.js";
import { eventBit } from "../../src/nri/plugin.js";
import { TtrpcClient, TtrpcServer, createClient } from "../../src/ttrpc/index.js";
import { FailedPreconditionError } from "../../src/util/errors.js";
import { silentLogger } from "../../src/util/log.js";

let dir: string;
let nri: NriAdaptation;
const calls: string[] = [];
const existing = PodSandbox.fromPartial({ id: "existing", name: "pod", namespace: "ns" });

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "nri-adaptation-"));
  nri = new NriAdaptation({
    socketPath: join(dir, "nri", "nri.sock"),
    registrationTimeoutMs: 2000,
    requestTimeoutMs: 300,
    runtimeName: "berth",
    runtimeVersion: "test",
    log: silentLogger(),
  });
  await nri.start({ pods: () => [existing], containers: () => [] });
});

after(async () => {
  await nri.stop();
  await rm(dir, { recursive: true, force: true });
});

interface Behaviour {
  fail?: boolean;
  hang?: boolean;
}

/** A plugin as NRI's stub makes one: serves Plugin on connection 1, registers on connection 2. */
async function connectPlugin(name: string, idx: string, behaviour: Behaviour): Promise<{ synced: string[] }> {
  const socket = net.connect(join(dir, "nri", "nri.sock"));
  await new Promise((resolve) => socket.once("connect", resolve));
  const mux = new Multiplexer(socket);
  const synced: string[] = [];
  const hook = (what: string) => async () => {
    calls.push(`${idx}-${name} ${what}`);
    if (behaviour.hang) await new Promise(() => {});
    if (behaviour.fail) throw new Error(`${name} says no`);
    return {};
  };
  const server = new TtrpcServer();
  server.register(PluginDefinition, {
    configure: async () => ({ events: eventBit(Event.RUN_POD_SANDBOX) | eventBit(Event.STOP_POD_SANDBOX) }),
    synchronize: async (req: { pods: PodSandbox[] }) => {
      synced.push(...req.pods.map((p) => p.id));
      return { update: [], more: false };
    },
    runPodSandbox: hook("RunPodSandbox"),
    stopPodSandbox: hook("StopPodSandbox"),
    shutdown: async () => {
      calls.push(`${idx}-${name} Shutdown`);
      return {};
    },
  });
  server.serveSocket(mux.open(PLUGIN_SERVICE_CONN));
  const runtime = createClient(RuntimeDefinition, new TtrpcClient(mux.open(RUNTIME_SERVICE_CONN), "runtime"));
  await runtime.registerPlugin({ pluginName: name, pluginIdx: idx, NRIVersion: "" });
  const label = `${idx}-${name}`;
  const deadline = Date.now() + 5000;
  while (!nri.pluginNames.includes(label)) {
    if (Date.now() > deadline) throw new Error(`${label} never joined`);
    await new Promise((r) => setTimeout(r, 10));
  }
  return { synced };
}

const pod = PodSandbox.fromPartial({ id: "p1", name: "n", namespace: "ns" });

test("plugins join synchronized and are called in index order, not connection order", async () => {
  // No plugin yet: nobody hears of any event (StartContainer may then run the task at Create).
  assert.equal(nri.subscribed(Event.START_CONTAINER), false);
  const second = await connectPlugin("second", "10", {});
  const first = await connectPlugin("first", "05", {});
  // Only what the plugins subscribed to is heard.
  assert.equal(nri.subscribed(Event.RUN_POD_SANDBOX), true);
  assert.equal(nri.subscribed(Event.START_CONTAINER), false);
  assert.deepEqual(second.synced, ["existing"]);
  assert.deepEqual(first.synced, ["existing"]);
  assert.deepEqual(nri.pluginNames, ["05-first", "10-second"]);
  calls.length = 0;
  await nri.runPodSandbox(pod);
  assert.deepEqual(calls, ["05-first RunPodSandbox", "10-second RunPodSandbox"]);
});

test("a plugin's error fails RunPodSandbox naming it, and is only logged for StopPodSandbox", async () => {
  await connectPlugin("refuser", "20", { fail: true });
  await assert.rejects(
    nri.runPodSandbox(pod),
    (e: unknown) =>
      e instanceof FailedPreconditionError && /20-refuser failed RunPodSandbox: .*refuser says no/.test(String(e)),
  );
  calls.length = 0;
  await nri.stopPodSandbox(pod);
  assert.deepEqual(calls, ["05-first StopPodSandbox", "10-second StopPodSandbox", "20-refuser StopPodSandbox"]);
});

test("a plugin that does not answer in time is disconnected, and the operation goes on without it", async () => {
  await connectPlugin("sleeper", "01", { hang: true });
  calls.length = 0;
  await nri.stopPodSandbox(pod);
  assert.deepEqual(calls, [
    "01-sleeper StopPodSandbox",
    "05-first StopPodSandbox",
    "10-second StopPodSandbox",
    "20-refuser StopPodSandbox",
  ]);
  assert.ok(!nri.pluginNames.includes("01-sleeper"), "the sleeper is gone");
});

test("stopping tells every plugin to shut down", async () => {
  calls.length = 0;
  await nri.stop();
  assert.deepEqual(calls.sort(), ["05-first Shutdown", "10-second Shutdown", "20-refuser Shutdown"]);
  assert.deepEqual(nri.pluginNames, []);
});
