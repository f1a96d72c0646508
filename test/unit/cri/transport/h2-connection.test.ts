// berth's HTTP/2 server connection (src/cri/transport/h2-connection.ts) under BerthGrpcServer,
// driven frame by frame over a unix socket for what real gRPC clients rarely do: CONTINUATION,
// padding, the PRIORITY flag, PING and SETTINGS acks, a window change mid-call, a large answer
// through a small client window, RST_STREAM, and the connection errors the RFC names (GOAWAY
// with the code, then the connection closes).
import * as grpc from "@grpc/grpc-js";
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
import { implementService } from "../../../../src/cri/server.js";
import { encodeMessage } from "../../../../src/cri/transport/grpc-frame.js";
import { BerthGrpcServer } from "../../../../src/cri/transport/grpc-server.js";
import { ErrorCode, Flag, frame, FrameType, Setting, u32 } from "../../../../src/cri/transport/h2-frames.js";
import { RECV } from "../../../../src/cri/transport/h2-limits.js";
import { silentLogger } from "../../../../src/util/log.js";
import {
  dataFrame,
  headersFrame,
  RawH2Client,
  type RawFrame,
  requestBlock,
  settingsFrame,
  windowUpdate,
} from "./raw-h2-client.js";
import { EVENTS, LOAD, onAbort, serveForTest, VERSION, versionBody } from "./fixtures.js";

const BIG = 200 * 1024;

let dir = "";
let socket = "";
let stop = () => {};
let aborted: Promise<unknown> = Promise.resolve();
let slowStarted: () => void = () => {};

before(async () => {
  const runtime = {
    async version(req: VersionRequest, ctx: { signal: AbortSignal }) {
      if (req.version === "big") return VersionResponse.fromPartial({ runtimeName: "b".repeat(BIG) });
      if (req.version === "slow") {
        aborted = onAbort(ctx.signal);
        slowStarted();
        await aborted;
      }
      if (req.version.startsWith("wait:")) await new Promise((r) => setTimeout(r, Number(req.version.slice(5))));
      return VersionResponse.fromPartial({ version: req.version });
    },
    async getContainerEvents(_req: unknown, ctx: { send: (m: unknown) => Promise<void> }) {
      for (let i = 0; i < 50; i++) await ctx.send(ContainerEventResponse.fromPartial({ containerId: `c${i}` }));
    },
  };
  // A client stream whose handler never reads: its requests stay unconsumed (flow control holds them).
  const berth = {
    async loadImages(_requests: unknown, ctx: { signal: AbortSignal }) {
      await onAbort(ctx.signal);
      return LoadImagesResponse.fromPartial({});
    },
  };
  ({ dir, socket, stop } = await serveForTest(
    "berth-h2conn-",
    { maxRecvMessageSize: 64 * 1024, maxSendMessageSize: 1 << 20 },
    runtime,
    berth,
  ));
});

after(() => stop());

/** Reads stream `id`'s response to its end: headers, body, trailers (windows credited as `credit` says). */
async function response(
  c: RawH2Client,
  id: number,
  credit?: (f: RawFrame) => void,
  /** The response headers when the test read them already. */
  read?: RawFrame,
): Promise<{ headers: Record<string, string>; body: Buffer; trailers: Record<string, string> }> {
  let headers = read && c.headersOf(read);
  let trailers: Record<string, string> = {};
  const body: Buffer[] = [];
  for (;;) {
    const f = await c.next((x) => x.id === id && (x.type === FrameType.HEADERS || x.type === FrameType.DATA));
    assert.ok(f, `stream ${id} ended without END_STREAM`);
    if (f.type === FrameType.DATA) {
      body.push(f.payload);
      credit?.(f);
    } else if (!headers) headers = c.headersOf(f);
    else trailers = c.headersOf(f);
    if (f.flags & Flag.END_STREAM) return { headers: headers!, body: Buffer.concat(body), trailers };
  }
}

const decodeVersion = (body: Buffer) => VersionResponse.decode(body.subarray(5));

test("the server speaks first: SETTINGS with its limits, then a connection WINDOW_UPDATE", async () => {
  const c = await RawH2Client.open(socket);
  try {
    const s = await c.next();
    assert.equal(s?.type, FrameType.SETTINGS);
    const values = new Map<number, number>();
    for (let i = 0; i < s.payload.length; i += 6) values.set(s.payload.readUInt16BE(i), s.payload.readUInt32BE(i + 2));
    assert.equal(values.get(Setting.INITIAL_WINDOW_SIZE), RECV.streamWindow);
    assert.equal(values.get(Setting.MAX_CONCURRENT_STREAMS), RECV.maxConcurrentStreams);
    const w = await c.next();
    assert.equal(w?.type, FrameType.WINDOW_UPDATE);
    assert.equal(w.id, 0);
    // Our SETTINGS is acknowledged.
    const ack = await c.next((f) => f.type === FrameType.SETTINGS);
    assert.equal(ack?.flags, Flag.ACK);
    assert.equal(ack.payload.length, 0);
  } finally {
    c.close();
  }
});

test("a header block in HEADERS (padded, with priority) + CONTINUATION and padded DATA: answered", async () => {
  const c = await RawH2Client.open(socket);
  try {
    const block = requestBlock(VERSION);
    const pad = 7;
    const first = block.subarray(0, 10);
    // PADDED | PRIORITY: pad length, 5 bytes of priority (depends on stream 0), fragment, padding.
    const payload = Buffer.concat([Buffer.from([pad]), Buffer.from([0, 0, 0, 0, 16]), first, Buffer.alloc(pad)]);
    const body = versionBody("continued");
    const paddedData = Buffer.concat([Buffer.from([3]), body, Buffer.alloc(3)]);
    c.send(
      frame(FrameType.HEADERS, Flag.PADDED | Flag.PRIORITY, 1, payload),
      frame(FrameType.CONTINUATION, 0, 1, block.subarray(10, 20)),
      frame(FrameType.CONTINUATION, Flag.END_HEADERS, 1, block.subarray(20)),
      frame(FrameType.PRIORITY, 0, 1, Buffer.from([0, 0, 0, 0, 1])),
      frame(FrameType.DATA, Flag.PADDED | Flag.END_STREAM, 1, paddedData),
    );
    const r = await response(c, 1);
    assert.equal(r.headers[":status"], "200");
    assert.equal(r.trailers["grpc-status"], "0");
    assert.equal(decodeVersion(r.body).version, "continued");
  } finally {
    c.close();
  }
});

test("PING is acknowledged with its payload; unknown frame types are ignored", async () => {
  const c = await RawH2Client.open(socket);
  try {
    c.send(frame(0xfa, 0, 0, Buffer.from("whatever")), frame(FrameType.PING, 0, 0, Buffer.from("berthpng")));
    const p = await c.next((f) => f.type === FrameType.PING);
    assert.equal(p?.flags, Flag.ACK);
    assert.equal(p.payload.toString(), "berthpng");
  } finally {
    c.close();
  }
});

test("a large answer through a client window of 0, then raised by SETTINGS, then WINDOW_UPDATEs", async () => {
  const c = await RawH2Client.open(socket, [[Setting.INITIAL_WINDOW_SIZE, 0]]);
  try {
    c.send(headersFrame(1, requestBlock(VERSION)), dataFrame(1, versionBody("big"), true));
    const h = await c.next((f) => f.id === 1);
    assert.equal(h?.type, FrameType.HEADERS);
    // A PING's ack comes after anything the server wrote before it: no DATA went out on a 0 window.
    c.send(frame(FrameType.PING, 0, 0, Buffer.alloc(8)));
    await c.next((f) => f.type === FrameType.PING);
    assert.equal(c.frames.filter((f) => f.type === FrameType.DATA).length, 0);
    // Raise the stream window to 1000: SETTINGS is acked, and DATA up to the window follows.
    let streamCredit = 1000;
    let connCredit = 65535;
    c.send(settingsFrame([[Setting.INITIAL_WINDOW_SIZE, 1000]]));
    const r = await response(
      c,
      1,
      (f) => {
        streamCredit -= f.payload.length;
        connCredit -= f.payload.length;
        assert.ok(streamCredit >= 0 && connCredit >= 0, "the server sent beyond a window");
        if (streamCredit === 0) {
          streamCredit += 4000;
          c.send(windowUpdate(1, 4000));
        }
        if (connCredit < 20000) {
          connCredit += 50000;
          c.send(windowUpdate(0, 50000));
        }
      },
      h,
    );
    assert.equal(r.trailers["grpc-status"], "0");
    assert.equal(decodeVersion(r.body).runtimeName.length, BIG);
  } finally {
    c.close();
  }
});

test("server streaming through a tiny window: the writer waits for drain, every message arrives", async () => {
  const c = await RawH2Client.open(socket, [[Setting.INITIAL_WINDOW_SIZE, 20]]);
  try {
    c.send(headersFrame(1, requestBlock(EVENTS)), dataFrame(1, encodeMessage(Buffer.alloc(0)), true));
    const r = await response(c, 1, () => c.send(windowUpdate(1, 20)));
    assert.equal(r.trailers["grpc-status"], "0");
    const ids: string[] = [];
    for (let at = 0; at < r.body.length;) {
      const n = r.body.readUInt32BE(at + 1);
      ids.push(ContainerEventResponse.decode(r.body.subarray(at + 5, at + 5 + n)).containerId);
      at += 5 + n;
    }
    assert.deepEqual(
      ids,
      Array.from({ length: 50 }, (_, i) => `c${i}`),
    );
  } finally {
    c.close();
  }
});

test("RST_STREAM from the client cancels its call; the connection serves on", async () => {
  const c = await RawH2Client.open(socket);
  try {
    const started = new Promise<void>((resolve) => (slowStarted = resolve));
    c.send(headersFrame(1, requestBlock(VERSION)), dataFrame(1, versionBody("slow"), true));
    await started;
    c.send(frame(FrameType.RST_STREAM, 0, 1, u32(ErrorCode.CANCEL)));
    assert.equal(((await aborted) as Error).message, "call cancelled by the client");
    c.send(headersFrame(3, requestBlock(VERSION)), dataFrame(3, versionBody("next"), true));
    assert.equal(decodeVersion((await response(c, 3)).body).version, "next");
  } finally {
    c.close();
  }
});

test("GOAWAY from the client: the call in flight is answered, then the connection closes", async () => {
  const c = await RawH2Client.open(socket);
  try {
    c.send(headersFrame(1, requestBlock(VERSION)), dataFrame(1, versionBody("wait:50"), true));
    c.send(frame(FrameType.GOAWAY, 0, 0, Buffer.concat([u32(0), u32(ErrorCode.NO_ERROR)])));
    assert.equal(decodeVersion((await response(c, 1)).body).version, "wait:50");
    await c.closed;
  } finally {
    c.close();
  }
});

test("any :authority is served, and a request answered before its end is reset with NO_ERROR", async () => {
  const c = await RawH2Client.open(socket);
  try {
    c.send(headersFrame(1, requestBlock("/no.Such/Method", { ":authority": "/run/berth/berth.sock" })));
    const r = await c.next((f) => f.id === 1);
    assert.equal(c.headersOf(r!)["grpc-status"], String(grpc.status.UNIMPLEMENTED));
    assert.ok(r!.flags & Flag.END_STREAM);
    const rst = await c.next((f) => f.id === 1);
    assert.equal(rst?.type, FrameType.RST_STREAM);
    assert.equal(rst.payload.readUInt32BE(0), ErrorCode.NO_ERROR);
    // What the client had in flight for it is ignored, not an error.
    c.send(dataFrame(1, versionBody("late"), true));
    c.send(headersFrame(3, requestBlock(VERSION)), dataFrame(3, versionBody("still"), true));
    assert.equal(decodeVersion((await response(c, 3)).body).version, "still");
  } finally {
    c.close();
  }
});

test("a malformed request (a pseudo-header twice) is reset with PROTOCOL_ERROR; the connection serves on", async () => {
  const c = await RawH2Client.open(socket);
  try {
    const bad = Buffer.concat([requestBlock(VERSION), requestBlock(VERSION)]);
    c.send(headersFrame(1, bad, true));
    const rst = await c.next((f) => f.id === 1);
    assert.equal(rst?.type, FrameType.RST_STREAM);
    assert.equal(rst.payload.readUInt32BE(0), ErrorCode.PROTOCOL_ERROR);
    c.send(headersFrame(3, requestBlock(VERSION)), dataFrame(3, versionBody("fine"), true));
    assert.equal(decodeVersion((await response(c, 3)).body).version, "fine");
  } finally {
    c.close();
  }
});

test("DATA after the client's END_STREAM: the stream is reset with STREAM_CLOSED and its call cancelled", async () => {
  const c = await RawH2Client.open(socket);
  try {
    const started = new Promise<void>((resolve) => (slowStarted = resolve));
    c.send(headersFrame(1, requestBlock(VERSION)), dataFrame(1, versionBody("slow"), true));
    await started;
    c.send(dataFrame(1, Buffer.alloc(3)));
    const rst = await c.next((f) => f.id === 1);
    assert.equal(rst?.type, FrameType.RST_STREAM);
    assert.equal(rst.payload.readUInt32BE(0), ErrorCode.STREAM_CLOSED);
    assert.equal(((await aborted) as Error).message, "call cancelled by the client");
  } finally {
    c.close();
  }
});

test("a client that stops reading: the answer waits for the socket, then arrives whole", async () => {
  // Large windows, so only the socket's backpressure can hold the 200 KiB answers back.
  const c = await RawH2Client.open(socket, [[Setting.INITIAL_WINDOW_SIZE, 16 << 20]]);
  try {
    c.send(windowUpdate(0, 16 << 20));
    c.socket.pause();
    const ids = [1, 3, 5, 7, 9, 11, 13, 15];
    for (const id of ids) c.send(headersFrame(id, requestBlock(VERSION)), dataFrame(id, versionBody("big"), true));
    // 1.6 MiB of answers against a socket nobody reads: the server's writes report a full
    // socket and the rest waits for its 'drain'. (The pause only gives the handlers time to
    // answer; the outcome does not depend on its length.)
    await new Promise((r) => setTimeout(r, 100));
    c.socket.resume();
    for (const id of ids) {
      const r = await response(c, id);
      assert.equal(r.trailers["grpc-status"], "0");
      assert.equal(decodeVersion(r.body).runtimeName.length, BIG);
    }
  } finally {
    c.close();
  }
});

test("graceful shutdown: GOAWAY names the last stream, a newer one is refused, the call in flight finishes", async () => {
  const s2 = new BerthGrpcServer({ log: silentLogger(), maxRecvMessageSize: 1 << 20, maxSendMessageSize: 1 << 20 });
  let release: () => void = () => {};
  let running: () => void = () => {};
  const started = new Promise<void>((resolve) => (running = resolve));
  const handlers = {
    async version() {
      running();
      await new Promise<void>((resolve) => (release = resolve));
      return VersionResponse.fromPartial({ version: "done" });
    },
  };
  s2.addService(RuntimeServiceService, implementService(RuntimeServiceService, handlers, { log: silentLogger() }));
  const sock2 = join(dir, "shutdown.sock");
  await s2.listen(sock2);
  const c = await RawH2Client.open(sock2);
  try {
    c.send(headersFrame(1, requestBlock(VERSION)), dataFrame(1, versionBody("x"), true));
    await started;
    const shutDown = new Promise<void>((resolve) => s2.tryShutdown(() => resolve()));
    const g = await c.next((f) => f.type === FrameType.GOAWAY);
    assert.equal(g?.payload.readUInt32BE(0), 1);
    assert.equal(g.payload.readUInt32BE(4), ErrorCode.NO_ERROR);
    c.send(headersFrame(3, requestBlock(VERSION)), dataFrame(3, versionBody("late"), true));
    const refused = await c.next((f) => f.id === 3);
    assert.equal(refused?.type, FrameType.RST_STREAM);
    assert.equal(refused.payload.readUInt32BE(0), ErrorCode.REFUSED_STREAM);
    release();
    assert.equal(decodeVersion((await response(c, 1)).body).version, "done");
    await c.closed;
    await shutDown;
  } finally {
    c.close();
    s2.forceShutdown();
  }
});

/** Connection errors: the bytes after a good preface + SETTINGS, and the GOAWAY code expected. */
const connectionErrors: [string, () => Buffer[], number][] = [
  ["an even stream id", () => [headersFrame(2, requestBlock(VERSION), true)], ErrorCode.PROTOCOL_ERROR],
  [
    "HPACK garbage",
    () => [headersFrame(1, Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]))],
    ErrorCode.COMPRESSION_ERROR,
  ],
  [
    "a frame inside a header block",
    () => [frame(FrameType.HEADERS, 0, 1, requestBlock(VERSION)), frame(FrameType.PING, 0, 0, Buffer.alloc(8))],
    ErrorCode.PROTOCOL_ERROR,
  ],
  [
    "CONTINUATION without HEADERS",
    () => [frame(FrameType.CONTINUATION, Flag.END_HEADERS, 1, Buffer.alloc(1))],
    ErrorCode.PROTOCOL_ERROR,
  ],
  ["DATA on an idle stream", () => [dataFrame(5, Buffer.alloc(5))], ErrorCode.PROTOCOL_ERROR],
  [
    "HEADERS on a stream id below the last one, never opened (5.1.1)",
    () => [headersFrame(5, requestBlock(VERSION), true), headersFrame(3, requestBlock(VERSION), true)],
    ErrorCode.PROTOCOL_ERROR,
  ],
  [
    "PUSH_PROMISE",
    () => [frame(FrameType.PUSH_PROMISE, Flag.END_HEADERS, 1, Buffer.alloc(4))],
    ErrorCode.PROTOCOL_ERROR,
  ],
  ["a WINDOW_UPDATE of 0", () => [windowUpdate(0, 0)], ErrorCode.PROTOCOL_ERROR],
  ["a window over 2^31-1", () => [windowUpdate(0, 0x7fffffff)], ErrorCode.FLOW_CONTROL_ERROR],
  [
    "INITIAL_WINDOW_SIZE over 2^31-1",
    () => [settingsFrame([[Setting.INITIAL_WINDOW_SIZE, 0x80000000]])],
    ErrorCode.FLOW_CONTROL_ERROR,
  ],
  ["MAX_FRAME_SIZE under 16384", () => [settingsFrame([[Setting.MAX_FRAME_SIZE, 100]])], ErrorCode.PROTOCOL_ERROR],
  ["a PING of 7 bytes", () => [frame(FrameType.PING, 0, 0, Buffer.alloc(7))], ErrorCode.FRAME_SIZE_ERROR],
  [
    "a header block over the cap",
    () => [
      frame(FrameType.HEADERS, 0, 1, requestBlock(VERSION)),
      ...Array.from({ length: 70 }, () => frame(FrameType.CONTINUATION, 0, 1, Buffer.alloc(16384, 0x40))),
    ],
    ErrorCode.ENHANCE_YOUR_CALM,
  ],
  ["a frame over 16384 bytes", () => [frame(FrameType.DATA, 0, 1, Buffer.alloc(20000))], ErrorCode.FRAME_SIZE_ERROR],
];

for (const [what, frames, code] of connectionErrors) {
  test(`connection error: ${what} -> GOAWAY ${code}, closed`, async () => {
    const c = await RawH2Client.open(socket);
    try {
      c.send(...frames());
      assert.equal(await c.goawayCode(), code);
    } finally {
      c.close();
    }
  });
}

test("HEADERS on a stream that was opened and closed: GOAWAY STREAM_CLOSED; a skipped id below it: PROTOCOL_ERROR", async () => {
  for (const [ids, code] of [
    [[1, 1], ErrorCode.STREAM_CLOSED],
    [[1, 5, 3], ErrorCode.PROTOCOL_ERROR],
    [[1, 5, 5], ErrorCode.STREAM_CLOSED],
  ] as const) {
    const c = await RawH2Client.open(socket);
    try {
      for (const [i, id] of ids.entries()) {
        c.send(headersFrame(id, requestBlock(VERSION)), dataFrame(id, versionBody(`v${i}`), true));
        if (i < ids.length - 1) assert.equal(decodeVersion((await response(c, id)).body).version, `v${i}`);
      }
      assert.equal(await c.goawayCode(), code, `streams ${ids.join(", ")}`);
    } finally {
      c.close();
    }
  }
});

test("request DATA beyond the stream window (its call does not read) is a FLOW_CONTROL_ERROR", async () => {
  const c = await RawH2Client.open(socket);
  try {
    c.send(headersFrame(1, requestBlock(LOAD)));
    // 32 KiB messages in 16 KiB frames, past the 4 MiB window the server announced.
    const msg = encodeMessage(Buffer.alloc(32 * 1024 - 5));
    let sent = 0;
    while (sent <= RECV.streamWindow && !c.ended) {
      c.send(dataFrame(1, msg.subarray(0, 16384)), dataFrame(1, msg.subarray(16384)));
      sent += msg.length;
      await new Promise((r) => setImmediate(r));
    }
    assert.equal(await c.goawayCode(), ErrorCode.FLOW_CONTROL_ERROR);
  } finally {
    c.close();
  }
});

test("a client that is not HTTP/2 (wrong preface) is disconnected", async () => {
  const c = await RawH2Client.open(socket, [], false);
  try {
    c.socket.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    await c.closed;
    assert.ok(c.frames.every((f) => f.type !== FrameType.HEADERS));
  } finally {
    c.close();
  }
});
