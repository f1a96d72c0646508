// NRI's connection multiplexer and plugin handshake, runtime side: frames are split and
// reassembled whatever the chunking of the socket reads, an oversized frame is refused, and a
// plugin speaking ttrpc on logical connections 1 and 2 of a real unix socket registers, is
// configured with the runtime's name and timeouts, and answers calls. (critest's NRI specs,
// test/e2e/critest.test.ts, check the same against the Go stub containerd's plugins use.)
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";

import {
  type ConfigureRequest,
  Event,
  PluginDefinition,
  RuntimeDefinition,
  type SynchronizeRequest,
} from "../../src/gen/nri/api.js";
import {
  MAX_FRAME_PAYLOAD,
  Multiplexer,
  MuxFrameParser,
  PLUGIN_SERVICE_CONN,
  RUNTIME_SERVICE_CONN,
  encodeMuxFrame,
} from "../../src/nri/mux.js";
import { NriPlugin, eventBit } from "../../src/nri/plugin.js";
import { SyncLock } from "../../src/nri/sync-lock.js";
import { TtrpcClient, TtrpcServer, createClient } from "../../src/ttrpc/index.js";
import { DeadlineExceededError, InvalidArgumentError } from "../../src/util/errors.js";
import { silentLogger } from "../../src/util/log.js";

test("frames: header is big-endian connection id and length; reassembled from one-byte reads", () => {
  const a = encodeMuxFrame(PLUGIN_SERVICE_CONN, Buffer.from("hello"));
  assert.deepEqual([...a.subarray(0, 8)], [0, 0, 0, 1, 0, 0, 0, 5]);
  const b = encodeMuxFrame(RUNTIME_SERVICE_CONN, Buffer.alloc(0));
  const c = encodeMuxFrame(7, Buffer.from("x".repeat(300)));
  const got: [number, string][] = [];
  const p = new MuxFrameParser(
    (id, payload) => got.push([id, payload.toString()]),
    (err) => assert.fail(err),
  );
  for (const byte of Buffer.concat([a, b, c])) p.push(Buffer.from([byte]));
  assert.deepEqual(got, [
    [1, "hello"],
    [2, ""],
    [7, "x".repeat(300)],
  ]);
});

test("frames: a frame over the largest ttrpc message is a protocol error, and nothing follows it", () => {
  const header = Buffer.alloc(8);
  header.writeUInt32BE(1, 0);
  header.writeUInt32BE(MAX_FRAME_PAYLOAD + 1, 4);
  const errors: Error[] = [];
  let frames = 0;
  const p = new MuxFrameParser(
    () => frames++,
    (err) => errors.push(err),
  );
  p.push(header);
  p.push(encodeMuxFrame(1, Buffer.from("late")));
  assert.equal(errors.length, 1);
  assert.ok(errors[0] instanceof InvalidArgumentError);
  assert.equal(frames, 0);
  assert.throws(() => encodeMuxFrame(1, Buffer.alloc(MAX_FRAME_PAYLOAD + 1)), InvalidArgumentError);
});

/** A unix socket pair in a temporary directory: [berthd's end, the plugin's end]. */
async function socketPair(t: { after(fn: () => unknown): void }): Promise<[net.Socket, net.Socket]> {
  const dir = await mkdtemp(join(tmpdir(), "nri-mux-"));
  const path = join(dir, "s");
  const server = net.createServer();
  const accepted = new Promise<net.Socket>((resolve) => server.once("connection", resolve));
  await new Promise<void>((resolve) => server.listen(path, resolve));
  const client = net.connect(path);
  const runtimeEnd = await accepted;
  t.after(async () => {
    client.destroy();
    runtimeEnd.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await rm(dir, { recursive: true, force: true });
  });
  return [runtimeEnd, client];
}

const log = silentLogger();
const opts = {
  runtimeName: "berth",
  runtimeVersion: "9.9.9",
  registrationTimeoutMs: 2000,
  requestTimeoutMs: 2000,
  log,
};

/** The plugin side, as NRI's stub sets it up: serves Plugin on connection 1, calls Runtime on 2. */
function fakePlugin(socket: net.Socket, events: number) {
  const mux = new Multiplexer(socket);
  const seen: { configure?: ConfigureRequest; sync?: SynchronizeRequest } = {};
  const server = new TtrpcServer();
  server.register(PluginDefinition, {
    configure: async (req: ConfigureRequest) => {
      seen.configure = req;
      return { events };
    },
    synchronize: async (req: SynchronizeRequest) => {
      seen.sync = req;
      return { update: [], more: false };
    },
  });
  server.serveSocket(mux.open(PLUGIN_SERVICE_CONN));
  const runtime = createClient(RuntimeDefinition, new TtrpcClient(mux.open(RUNTIME_SERVICE_CONN), "runtime"));
  return { mux, runtime, seen, server };
}

test("a plugin registers over the multiplexed socket, is configured, and answers calls", async (t) => {
  const [runtimeEnd, pluginEnd] = await socketPair(t);
  const plugin = new NriPlugin(runtimeEnd, opts);
  t.after(() => plugin.close());
  const fake = fakePlugin(pluginEnd, eventBit(Event.RUN_POD_SANDBOX) | eventBit(Event.CREATE_CONTAINER));
  t.after(() => fake.mux.close());
  const handshake = plugin.handshake();
  await fake.runtime.registerPlugin({ pluginName: "test-plugin", pluginIdx: "05", NRIVersion: "v0.12.3" });
  await handshake;
  assert.equal(plugin.label, "05-test-plugin");
  assert.equal(fake.seen.configure?.runtimeName, "berth");
  assert.equal(fake.seen.configure?.runtimeVersion, "9.9.9");
  assert.equal(fake.seen.configure?.registrationTimeout, 2000n);
  assert.equal(fake.seen.configure?.requestTimeout, 2000n);
  assert.ok(plugin.subscribed(Event.RUN_POD_SANDBOX));
  assert.ok(plugin.subscribed(Event.CREATE_CONTAINER));
  assert.ok(!plugin.subscribed(Event.STOP_POD_SANDBOX));

  const pods = [
    {
      id: "p1",
      name: "n",
      uid: "u",
      namespace: "ns",
      labels: {},
      annotations: {},
      runtimeHandler: "",
      linux: undefined,
      pid: 0,
      ips: [],
    },
  ];
  await plugin.api.synchronize({ pods, containers: [], more: false });
  assert.deepEqual(
    fake.seen.sync?.pods.map((p) => p.id),
    ["p1"],
  );

  // The plugin going away closes berthd's side.
  const closed = new Promise<void>((resolve) => plugin.once("close", resolve));
  pluginEnd.destroy();
  await closed;
  assert.ok(plugin.closed);
});

test("a plugin that never registers is dropped after the registration timeout", async (t) => {
  const [runtimeEnd, pluginEnd] = await socketPair(t);
  const plugin = new NriPlugin(runtimeEnd, { ...opts, registrationTimeoutMs: 50 });
  t.after(() => pluginEnd.destroy());
  await assert.rejects(plugin.handshake(), DeadlineExceededError);
  assert.ok(plugin.closed);
});

test("a plugin registering with a bad index is refused, and told why", async (t) => {
  const [runtimeEnd, pluginEnd] = await socketPair(t);
  const plugin = new NriPlugin(runtimeEnd, opts);
  const fake = fakePlugin(pluginEnd, 0);
  t.after(() => fake.mux.close());
  const refused = assert.rejects(plugin.handshake(), InvalidArgumentError);
  await assert.rejects(fake.runtime.registerPlugin({ pluginName: "x", pluginIdx: "5", NRIVersion: "" }), /two digits/);
  await refused;
  assert.ok(plugin.closed);
});

test("sync lock: a synchronization waits for creations in flight, and later creations wait for it", async () => {
  const lock = new SyncLock();
  const order: string[] = [];
  let releaseCreate!: () => void;
  const create1 = lock.shared(async () => {
    order.push("create1 start");
    await new Promise<void>((r) => (releaseCreate = r));
    order.push("create1 end");
  });
  const sync = lock.exclusive(async () => {
    order.push("sync");
  });
  const create2 = lock.shared(async () => {
    order.push("create2");
  });
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(order, ["create1 start"]);
  releaseCreate();
  await Promise.all([create1, sync, create2]);
  assert.deepEqual(order, ["create1 start", "create1 end", "sync", "create2"]);
});
