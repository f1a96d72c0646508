// Send-side flow control of berth's HTTP/2 server connection (src/cri/transport/h2-connection.ts,
// h2-sender.ts) counted frame by frame with a raw client: a server-streaming call sends exactly
// up to the client's stream window and no more, then exactly what each WINDOW_UPDATE or
// SETTINGS_INITIAL_WINDOW_SIZE change (down to a negative window, 6.9.2) allows; a multi-MiB
// unary answer through the default 65,535-byte windows credited as read; a client that sends
// PINGs but reads nothing is cut off past RECV.maxWriteBacklog; WINDOW_UPDATE on a closed stream.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { ContainerEventResponse, VersionRequest, VersionResponse } from "../../../../src/gen/cri/runtime/v1/api.js";
import { encodeMessage } from "../../../../src/cri/transport/grpc-frame.js";
import { Flag, frame, FrameType, Setting } from "../../../../src/cri/transport/h2-frames.js";
import { RECV } from "../../../../src/cri/transport/h2-limits.js";
import { dataFrame, headersFrame, RawH2Client, requestBlock, settingsFrame, windowUpdate } from "./raw-h2-client.js";
import { EVENTS, serveForTest, VERSION, versionBody } from "./fixtures.js";

const MESSAGES = 40;
const HUGE = 6 << 20;

let socket = "";
let stop = () => {};
/** The streaming handler: sends resolved so far, and whether one is pending (held by flow control). */
const events = { resolved: 0, pending: false, count: MESSAGES, size: 95 };

before(async () => {
  const runtime = {
    async version(req: VersionRequest) {
      if (req.version === "huge") return VersionResponse.fromPartial({ runtimeName: "h".repeat(HUGE) });
      return VersionResponse.fromPartial({ version: req.version });
    },
    async getContainerEvents(_req: unknown, ctx: { send: (m: unknown) => Promise<void> }) {
      events.resolved = 0;
      for (let i = 0; i < events.count; i++) {
        events.pending = true;
        // Messages of ~100 bytes: the 1000-byte window ends inside one.
        await ctx.send(ContainerEventResponse.fromPartial({ containerId: `${i}`.padStart(events.size, "c") }));
        events.pending = false;
        events.resolved++;
      }
    },
  };
  ({ socket, stop } = await serveForTest(
    "berth-h2flow-",
    { maxRecvMessageSize: 1 << 20, maxSendMessageSize: 16 << 20 },
    runtime,
  ));
});

after(() => stop());

let pings = 0;
/**
 * Sends a PING and reads up to its ACK: the DATA bytes stream `id` got before it. The server
 * answers a PING after writing everything it had decided to send, so this is "all there is".
 */
async function dataUntilPing(c: RawH2Client, id: number, into: Buffer[]): Promise<{ bytes: number; ended: boolean }> {
  const tag = Buffer.alloc(8);
  tag.writeUInt32BE(++pings);
  c.send(frame(FrameType.PING, 0, 0, tag));
  let bytes = 0;
  let ended = false;
  for (;;) {
    const f = await c.next(
      (x) => (x.type === FrameType.PING && x.payload.equals(tag)) || (x.id === id && x.type !== FrameType.HEADERS),
    );
    assert.ok(f, "the connection closed");
    if (f.type === FrameType.PING) return { bytes, ended };
    assert.equal(f.type, FrameType.DATA, `stream ${id} got frame type ${f.type}`);
    bytes += f.payload.length;
    into.push(f.payload);
    if (f.flags & Flag.END_STREAM) ended = true;
  }
}

/** Reads stream `id`'s DATA until `total` bytes came (never more), then a PING round trip: nothing more. */
async function exactly(c: RawH2Client, id: number, total: number, into: Buffer[], had: number): Promise<void> {
  let got = had;
  while (got < total) {
    const f = await c.next((x) => x.id === id && x.type === FrameType.DATA);
    assert.ok(f, "the connection closed");
    got += f.payload.length;
    into.push(f.payload);
    assert.ok(got <= total, `the server sent ${got} bytes on a window of ${total}`);
  }
  // The handler waits in a send (its message is held by the window), and nothing more comes.
  await until(() => events.pending || events.resolved === MESSAGES);
  assert.ok(events.pending, "the handler's sends all resolved: nothing waited for the window");
  const more = await dataUntilPing(c, id, into);
  assert.deepEqual(more, { bytes: 0, ended: false });
}

async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setImmediate(r));
}

test("server streaming sends exactly the client's stream window, then exactly what each WINDOW_UPDATE and SETTINGS change allows", async () => {
  const c = await RawH2Client.open(socket, [[Setting.INITIAL_WINDOW_SIZE, 1000]]);
  try {
    c.send(headersFrame(1, requestBlock(EVENTS)), dataFrame(1, encodeMessage(Buffer.alloc(0)), true));
    const body: Buffer[] = [];
    await exactly(c, 1, 1000, body, 0);
    c.send(windowUpdate(1, 333));
    await exactly(c, 1, 1333, body, 1000);
    // 6.9.2: lowering INITIAL_WINDOW_SIZE by 500 makes the (exhausted) window -500; a
    // WINDOW_UPDATE of 700 leaves 200 to send, and not a byte more.
    c.send(settingsFrame([[Setting.INITIAL_WINDOW_SIZE, 500]]), windowUpdate(1, 700));
    await exactly(c, 1, 1533, body, 1333);
    // Raising it lets the rest through, the trailers last.
    c.send(settingsFrame([[Setting.INITIAL_WINDOW_SIZE, 1 << 20]]));
    for (;;) {
      const f = await c.next((x) => x.id === 1);
      assert.ok(f, "the connection closed");
      if (f.type === FrameType.DATA) body.push(f.payload);
      else {
        assert.equal(f.type, FrameType.HEADERS);
        assert.ok(f.flags & Flag.END_STREAM);
        assert.equal(c.headersOf(f)["grpc-status"], "0");
        break;
      }
    }
    // Every message whole and in order.
    const all = Buffer.concat(body);
    const ids: string[] = [];
    for (let at = 0; at < all.length;) {
      const n = all.readUInt32BE(at + 1);
      ids.push(ContainerEventResponse.decode(all.subarray(at + 5, at + 5 + n)).containerId);
      at += 5 + n;
    }
    assert.deepEqual(
      ids,
      Array.from({ length: MESSAGES }, (_, i) => `${i}`.padStart(95, "c")),
    );
    assert.equal(events.resolved, MESSAGES);
  } finally {
    c.close();
  }
});

test("server streaming to a client that does not read: the handler's send waits for the socket's drain", async () => {
  // Windows as large as allowed: only the socket can hold the 16 x 1 MiB messages back.
  const c = await RawH2Client.open(socket, [[Setting.INITIAL_WINDOW_SIZE, 0x7fffffff]]);
  try {
    c.send(windowUpdate(0, 0x7fffffff - 65535));
    c.socket.pause();
    events.count = 16;
    events.size = 1 << 20;
    c.send(headersFrame(1, requestBlock(EVENTS)), dataFrame(1, encodeMessage(Buffer.alloc(0)), true));
    // A send that resolved without the socket taking the bytes would let the handler run to its end.
    await until(() => events.pending || events.resolved === events.count);
    assert.ok(events.pending && events.resolved < events.count, `${events.resolved} sends resolved`);
    c.socket.resume();
    let bytes = 0;
    let status: string | undefined;
    for (;;) {
      const f = await c.next((x) => x.id === 1);
      assert.ok(f, "the connection closed");
      if (f.type === FrameType.DATA) bytes += f.payload.length;
      if (f.flags & Flag.END_STREAM) {
        status = c.headersOf(f)["grpc-status"];
        break;
      }
    }
    assert.equal(status, "0");
    const one = ContainerEventResponse.encode(ContainerEventResponse.fromPartial({ containerId: "c".repeat(1 << 20) }));
    assert.equal(bytes, events.count * (5 + one.finish().length));
    assert.equal(events.resolved, events.count);
  } finally {
    events.count = MESSAGES;
    events.size = 95;
    c.close();
  }
});

test("a 6 MiB unary answer through the default 65,535-byte windows, credited as it is read, arrives intact", async () => {
  const c = await RawH2Client.open(socket);
  try {
    c.send(headersFrame(1, requestBlock(VERSION)), dataFrame(1, versionBody("huge"), true));
    let stream = 65535;
    let conn = 65535;
    const body: Buffer[] = [];
    let trailers: Record<string, string> = {};
    for (;;) {
      const f = await c.next((x) => x.id === 1);
      assert.ok(f, "the connection closed");
      if (f.type === FrameType.DATA) {
        stream -= f.payload.length;
        conn -= f.payload.length;
        assert.ok(stream >= 0 && conn >= 0, "the server sent beyond a window");
        body.push(f.payload);
        // Credited like a client that reads: each frame as it is consumed.
        if (f.payload.length > 0) {
          c.send(windowUpdate(1, f.payload.length), windowUpdate(0, f.payload.length));
          stream += f.payload.length;
          conn += f.payload.length;
        }
      } else if (f.type === FrameType.HEADERS && f.flags & Flag.END_STREAM) {
        trailers = c.headersOf(f);
        break;
      } else if (f.type === FrameType.HEADERS) {
        assert.equal(c.headersOf(f)[":status"], "200");
      } else assert.fail(`frame type ${f.type} on the stream`);
    }
    assert.equal(trailers["grpc-status"], "0");
    const all = Buffer.concat(body);
    assert.equal(all.readUInt32BE(1), all.length - 5);
    const answer = VersionResponse.decode(all.subarray(5));
    assert.equal(answer.runtimeName.length, HUGE);
    assert.ok(/^h+$/.test(answer.runtimeName));
  } finally {
    c.close();
  }
});

test("WINDOW_UPDATE and RST_STREAM on a stream that is closed are ignored; the connection serves on", async () => {
  const c = await RawH2Client.open(socket);
  try {
    c.send(headersFrame(1, requestBlock(VERSION)), dataFrame(1, versionBody("one"), true));
    const end = await c.next((f) => f.id === 1 && f.type === FrameType.HEADERS && (f.flags & Flag.END_STREAM) !== 0);
    assert.ok(end);
    c.send(windowUpdate(1, 100), frame(FrameType.RST_STREAM, 0, 1, Buffer.alloc(4)));
    c.send(headersFrame(3, requestBlock(VERSION)), dataFrame(3, versionBody("two"), true));
    const body: Buffer[] = [];
    for (;;) {
      const f = await c.next((x) => x.id === 1 || x.id === 3 || x.type === FrameType.GOAWAY);
      assert.ok(f && f.id === 3, `frame type ${f?.type} on stream ${f?.id}`);
      if (f.type === FrameType.DATA) body.push(f.payload);
      if (f.flags & Flag.END_STREAM) break;
    }
    assert.equal(VersionResponse.decode(Buffer.concat(body).subarray(5)).version, "two");
  } finally {
    c.close();
  }
});

test("a client that sends PINGs but never reads is disconnected once the unread answers pass the backlog cap", async () => {
  const c = await RawH2Client.open(socket);
  try {
    c.socket.pause(); // reads nothing from now on
    const pingsPerChunk = 61680; // 1 MiB of 17-byte PING frames
    const chunk = Buffer.concat(
      Array.from({ length: pingsPerChunk }, () => frame(FrameType.PING, 0, 0, Buffer.alloc(8))),
    );
    let sent = 0;
    // Every PING asks for an 17-byte ACK; past RECV.maxWriteBacklog of them unread (plus what
    // the kernel's socket buffers hold) the server gives up on the client.
    const limit = 4 * RECV.maxWriteBacklog;
    while (!c.ended && !c.socket.destroyed && sent < limit) {
      if (!c.socket.write(chunk)) {
        await Promise.race([new Promise((r) => c.socket.once("drain", r)), c.closed]);
      }
      sent += chunk.length;
    }
    await c.closed;
    assert.ok(sent > RECV.maxWriteBacklog, `cut off after ${sent} bytes, before the cap`);
    assert.ok(sent < limit, "never cut off");
    // The server serves others.
    const d = await RawH2Client.open(socket);
    try {
      d.send(headersFrame(1, requestBlock(VERSION)), dataFrame(1, versionBody("still"), true));
      const f = await d.next((x) => x.id === 1 && x.type === FrameType.DATA);
      assert.equal(VersionResponse.decode(f!.payload.subarray(5)).version, "still");
    } finally {
      d.close();
    }
  } finally {
    c.close();
  }
});
