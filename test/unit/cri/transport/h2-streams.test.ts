// The stream table of berth's HTTP/2 server connection (src/cri/transport/h2-connection.ts) under
// BerthGrpcServer, driven with raw frames: streams past SETTINGS_MAX_CONCURRENT_STREAMS are
// refused and the connection serves on; a stream depending on itself; client trailers; frames on
// a half-closed stream; HPACK dynamic table use and size updates from the client; 200 calls at
// once with half cancelled (RST_STREAM CANCEL) leaving an empty stream table; graceful shutdown
// with a server-streaming call open.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { LoadImagesResponse } from "../../../../src/gen/berth/v1/berth.js";
import {
  ContainerEventResponse,
  RuntimeServiceService,
  VersionRequest,
  VersionResponse,
} from "../../../../src/gen/cri/runtime/v1/api.js";
import { implementService, shutdownServer } from "../../../../src/cri/server.js";
import { encodeMessage } from "../../../../src/cri/transport/grpc-frame.js";
import { BerthGrpcServer } from "../../../../src/cri/transport/grpc-server.js";
import { ErrorCode, Flag, frame, FrameType, u32 } from "../../../../src/cri/transport/h2-frames.js";
import { RECV } from "../../../../src/cri/transport/h2-limits.js";
import { encodeWithoutIndexing } from "../../../../src/cri/transport/hpack.js";
import { silentLogger } from "../../../../src/util/log.js";
import { dataFrame, headersFrame, RawH2Client, type RawFrame, requestBlock } from "./raw-h2-client.js";
import { EVENTS, LOAD, onAbort, serveForTest, VERSION, versionBody } from "./fixtures.js";

let dir = "";
let socket = "";
let server: BerthGrpcServer;
let stop = () => {};
/** Version "hold" calls wait for this; each one's abort is counted. */
let release: () => void = () => {};
let held = Promise.resolve();
let holding = 0;
let holdAborted = 0;
let slowAborted: Promise<unknown> = Promise.resolve();
let slowStarted: () => void = () => {};

before(async () => {
  const runtime = {
    async version(req: VersionRequest, ctx: { signal: AbortSignal; metadata: { get(k: string): unknown[] } }) {
      if (req.version === "hold") {
        holding++;
        const aborted = onAbort(ctx.signal).then(() => holdAborted++);
        await Promise.race([held, aborted]);
      }
      if (req.version === "slow") {
        slowAborted = onAbort(ctx.signal);
        slowStarted();
        await slowAborted;
      }
      return VersionResponse.fromPartial({
        version: req.version,
        runtimeName: String(ctx.metadata.get("x-test")[0] ?? ""),
      });
    },
  };
  // A client stream whose handler waits for its cancellation: an open stream as long as the client wants.
  const berth = {
    async loadImages(_requests: unknown, ctx: { signal: AbortSignal }) {
      await onAbort(ctx.signal);
      return LoadImagesResponse.fromPartial({});
    },
  };
  ({ dir, socket, server, stop } = await serveForTest(
    "berth-h2streams-",
    { maxRecvMessageSize: 1 << 20, maxSendMessageSize: 1 << 20 },
    runtime,
    berth,
  ));
});

after(() => stop());

async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setImmediate(r));
}

/** Stream `id`'s answer to the end: its DATA and its trailers (a frame of another kind fails). */
async function answer(c: RawH2Client, id: number): Promise<{ body: Buffer; trailers: Record<string, string> }> {
  const body: Buffer[] = [];
  let headers = false;
  for (;;) {
    const f = await c.next((x) => x.id === id || x.type === FrameType.GOAWAY);
    assert.ok(f, `the connection closed before stream ${id} ended`);
    assert.notEqual(f.type, FrameType.GOAWAY, "GOAWAY");
    assert.notEqual(f.type, FrameType.RST_STREAM, `stream ${id} reset with ${f.payload.readUInt32BE(0)}`);
    if (f.type === FrameType.DATA) body.push(f.payload);
    else if (!headers) headers = true;
    if (f.flags & Flag.END_STREAM) {
      return { body: Buffer.concat(body), trailers: f.type === FrameType.HEADERS ? c.headersOf(f) : {} };
    }
  }
}

const versionOf = async (c: RawH2Client, id: number) => VersionResponse.decode((await answer(c, id)).body.subarray(5));

/** The next frame on stream `id` is RST_STREAM with `code`. */
async function resetWith(c: RawH2Client, id: number, code: number): Promise<void> {
  const f: RawFrame | null = await c.next((x) => x.id === id || x.type === FrameType.GOAWAY);
  assert.equal(f?.type, FrameType.RST_STREAM, `frame type ${f?.type} instead of RST_STREAM`);
  assert.equal(f.payload.readUInt32BE(0), code);
}

test("streams past MAX_CONCURRENT_STREAMS are refused with REFUSED_STREAM; the connection serves on", async () => {
  const c = await RawH2Client.open(socket);
  try {
    const max = RECV.maxConcurrentStreams;
    const block = requestBlock(LOAD);
    const ids = Array.from({ length: max }, (_, i) => 2 * i + 1);
    c.send(...ids.map((id) => headersFrame(id, block)));
    const over = 2 * max + 1;
    c.send(headersFrame(over, requestBlock(VERSION)), dataFrame(over, versionBody("refused?"), true));
    await resetWith(c, over, ErrorCode.REFUSED_STREAM);
    assert.equal(server.openStreams(), max);
    // None of the open ones was touched; one cancelled makes room for the next.
    assert.ok(c.frames.every((f) => f.type !== FrameType.RST_STREAM && f.type !== FrameType.GOAWAY));
    c.send(frame(FrameType.RST_STREAM, 0, 1, u32(ErrorCode.CANCEL)));
    // DATA the client had in flight for the refused stream is not an error.
    c.send(dataFrame(over, Buffer.alloc(4)));
    c.send(headersFrame(over + 2, requestBlock(VERSION)), dataFrame(over + 2, versionBody("room"), true));
    assert.equal((await versionOf(c, over + 2)).version, "room");
    c.close();
    await c.closed;
    await until(() => server.openStreams() === 0);
  } finally {
    c.close();
  }
});

test("HEADERS whose PRIORITY makes the stream depend on itself: that stream is reset with PROTOCOL_ERROR", async () => {
  const c = await RawH2Client.open(socket);
  try {
    const priority = Buffer.concat([u32(1), Buffer.from([16])]);
    c.send(
      frame(FrameType.HEADERS, Flag.PRIORITY | Flag.END_HEADERS, 1, Buffer.concat([priority, requestBlock(VERSION)])),
    );
    c.send(dataFrame(1, versionBody("self"), true));
    await resetWith(c, 1, ErrorCode.PROTOCOL_ERROR);
    // Its block was still decoded (the HPACK state holds), and the connection serves on.
    c.send(headersFrame(3, requestBlock(VERSION)), dataFrame(3, versionBody("next"), true));
    assert.equal((await versionOf(c, 3)).version, "next");
    assert.equal(server.openStreams(), 0);
  } finally {
    c.close();
  }
});

test("a PRIORITY frame making an open stream depend on itself resets it with PROTOCOL_ERROR and cancels its call; on an idle stream it ends the connection", async () => {
  const c = await RawH2Client.open(socket);
  try {
    const started = new Promise<void>((resolve) => (slowStarted = resolve));
    c.send(headersFrame(1, requestBlock(VERSION)), dataFrame(1, versionBody("slow"), true));
    await started;
    c.send(frame(FrameType.PRIORITY, 0, 1, Buffer.concat([u32(1), Buffer.from([16])])));
    await resetWith(c, 1, ErrorCode.PROTOCOL_ERROR);
    assert.equal(((await slowAborted) as Error).message, "call cancelled by the client");
    // On another stream (or on a closed one) it is ignored.
    c.send(frame(FrameType.PRIORITY, 0, 1, Buffer.concat([u32(3), Buffer.from([16])])));
    c.send(headersFrame(3, requestBlock(VERSION)), dataFrame(3, versionBody("on"), true));
    assert.equal((await versionOf(c, 3)).version, "on");
    c.send(frame(FrameType.PRIORITY, 0, 9, Buffer.concat([u32(9), Buffer.from([16])])));
    assert.equal(await c.goawayCode(), ErrorCode.PROTOCOL_ERROR);
  } finally {
    c.close();
  }
});

test("client trailers: HEADERS with END_STREAM after DATA ends the request, which is answered", async () => {
  const c = await RawH2Client.open(socket);
  try {
    const trailers = encodeWithoutIndexing([{ name: "x-client-trailer", value: "1" }]);
    c.send(
      headersFrame(1, requestBlock(VERSION)),
      dataFrame(1, versionBody("trailed")),
      headersFrame(1, trailers, true),
    );
    const r = await answer(c, 1);
    assert.equal(r.trailers["grpc-status"], "0");
    assert.equal(VersionResponse.decode(r.body.subarray(5)).version, "trailed");
  } finally {
    c.close();
  }
});

test("client trailers without END_STREAM: stream PROTOCOL_ERROR; HEADERS after the client's END_STREAM: STREAM_CLOSED, its call cancelled", async () => {
  const c = await RawH2Client.open(socket);
  try {
    const started = new Promise<void>((resolve) => (slowStarted = resolve));
    c.send(headersFrame(1, requestBlock(LOAD)), dataFrame(1, encodeMessage(Buffer.alloc(0))));
    c.send(headersFrame(1, encodeWithoutIndexing([{ name: "x-client-trailer", value: "1" }])));
    await resetWith(c, 1, ErrorCode.PROTOCOL_ERROR);
    await until(() => server.openStreams() === 0);
    // A call waiting on its request's end is cancelled too.
    c.send(headersFrame(3, requestBlock(VERSION)), dataFrame(3, versionBody("slow"), true));
    await started;
    c.send(headersFrame(3, encodeWithoutIndexing([{ name: "x-late", value: "1" }]), true));
    // 5.1: a frame other than WINDOW_UPDATE, PRIORITY or RST_STREAM on a half-closed (remote) stream.
    await resetWith(c, 3, ErrorCode.STREAM_CLOSED);
    assert.equal(((await slowAborted) as Error).message, "call cancelled by the client");
  } finally {
    c.close();
  }
});

test("HPACK from the client: dynamic table entries are used across requests, a size update evicts them", async () => {
  const c = await RawH2Client.open(socket);
  try {
    // Request 1 adds "x-test: abc" to the dynamic table (literal with incremental indexing).
    const indexed = Buffer.from([0x40, 6, ...Buffer.from("x-test"), 3, ...Buffer.from("abc")]);
    c.send(headersFrame(1, Buffer.concat([requestBlock(VERSION), indexed])), dataFrame(1, versionBody("1"), true));
    assert.equal((await versionOf(c, 1)).runtimeName, "abc");
    // Request 2 names it by index 62 (the first dynamic entry), after size updates to 0 and
    // back to 4096 at the start of its block... which evict it: a COMPRESSION_ERROR. First the
    // plain reference, then with the size update.
    c.send(
      headersFrame(3, Buffer.concat([requestBlock(VERSION), Buffer.from([0xbe])])),
      dataFrame(3, versionBody("3"), true),
    );
    assert.equal((await versionOf(c, 3)).runtimeName, "abc");
    const sizes = Buffer.from([0x20, 0x3f, 0xe1, 0x1f]); // size 0, then 4096
    c.send(headersFrame(5, Buffer.concat([sizes, requestBlock(VERSION)])), dataFrame(5, versionBody("5"), true));
    assert.equal((await versionOf(c, 5)).runtimeName, "");
    c.send(
      headersFrame(7, Buffer.concat([requestBlock(VERSION), Buffer.from([0xbe])])),
      dataFrame(7, versionBody("7"), true),
    );
    assert.equal(await c.goawayCode(), ErrorCode.COMPRESSION_ERROR);
  } finally {
    c.close();
  }
});

test("HPACK: a size update over the 4096 bytes SETTINGS allowed, or after a field, is a COMPRESSION_ERROR", async () => {
  for (const block of [
    Buffer.concat([Buffer.from([0x3f, 0xe2, 0x1f]), requestBlock(VERSION)]), // 4097
    Buffer.concat([requestBlock(VERSION), Buffer.from([0x20])]),
  ]) {
    const c = await RawH2Client.open(socket);
    try {
      c.send(headersFrame(1, block, true));
      assert.equal(await c.goawayCode(), ErrorCode.COMPRESSION_ERROR);
    } finally {
      c.close();
    }
  }
});

test("200 calls at once, half cancelled mid-call with RST_STREAM CANCEL: those are aborted, the rest answered, no stream left", async () => {
  const c = await RawH2Client.open(socket);
  try {
    holding = 0;
    holdAborted = 0;
    held = new Promise<void>((resolve) => (release = resolve));
    const ids = Array.from({ length: 200 }, (_, i) => 2 * i + 1);
    c.send(...ids.flatMap((id) => [headersFrame(id, requestBlock(VERSION)), dataFrame(id, versionBody("hold"), true)]));
    await until(() => holding === 200);
    assert.equal(server.openStreams(), 200);
    const cancelled = ids.filter((_, i) => i % 2 === 0);
    c.send(...cancelled.map((id) => frame(FrameType.RST_STREAM, 0, id, u32(ErrorCode.CANCEL))));
    await until(() => holdAborted === 100);
    assert.equal(server.openStreams(), 100);
    release();
    for (const id of ids.filter((_, i) => i % 2 === 1)) assert.equal((await versionOf(c, id)).version, "hold");
    assert.equal(server.openStreams(), 0);
    // Nothing was sent on a cancelled stream after its cancel.
    assert.ok(c.frames.every((f) => !cancelled.includes(f.id)));
  } finally {
    release();
    c.close();
  }
});

test("graceful shutdown with a server-streaming call open: GOAWAY, then at the grace's end the call is cancelled and the socket closes", async () => {
  const s2 = new BerthGrpcServer({ log: silentLogger(), maxRecvMessageSize: 1 << 20, maxSendMessageSize: 1 << 20 });
  let streamAborted: Promise<unknown> = new Promise(() => {});
  let streaming: () => void = () => {};
  const opened = new Promise<void>((resolve) => (streaming = resolve));
  const runtime = {
    async getContainerEvents(_req: unknown, ctx: { signal: AbortSignal; send: (m: unknown) => Promise<void> }) {
      await ctx.send(ContainerEventResponse.fromPartial({ containerId: "first" }));
      streamAborted = onAbort(ctx.signal);
      streaming();
      await streamAborted;
    },
  };
  s2.addService(RuntimeServiceService, implementService(RuntimeServiceService, runtime, { log: silentLogger() }));
  const sock2 = join(dir, "shutdown.sock");
  await s2.listen(sock2);
  const c = await RawH2Client.open(sock2);
  try {
    c.send(headersFrame(1, requestBlock(EVENTS)), dataFrame(1, encodeMessage(Buffer.alloc(0)), true));
    const first = await c.next((f) => f.id === 1 && f.type === FrameType.DATA);
    assert.equal(ContainerEventResponse.decode(first!.payload.subarray(5)).containerId, "first");
    await opened;
    const done = shutdownServer(s2, 300);
    const g = await c.next((f) => f.type === FrameType.GOAWAY);
    assert.equal(g?.payload.readUInt32BE(0), 1);
    assert.equal(g.payload.readUInt32BE(4), ErrorCode.NO_ERROR);
    // The stream never ends by itself: the grace ends, the connection is closed, the call cancelled.
    assert.equal(await done, "forced");
    assert.equal(((await streamAborted) as Error).message, "call cancelled by the client");
    await c.closed;
    assert.equal(s2.openStreams(), 0);
  } finally {
    c.close();
    s2.forceShutdown();
  }
});
