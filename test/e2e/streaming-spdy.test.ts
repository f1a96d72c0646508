// SPDY/3.1 building blocks: the header dictionary, header-block compression across a session,
// frame encoding, and a session's flow control against a strict peer.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { Duplex } from "node:stream";
import { test } from "node:test";
import { SpdyConnection, type SpdyStream } from "../../src/streaming/spdy/connection.js";
import { SPDY3_DICTIONARY } from "../../src/streaming/spdy/dictionary.js";
import {
  FLAG_FIN,
  encodeData,
  encodeGoAway,
  encodePing,
  encodeRstStream,
  encodeSettings,
  encodeWindowUpdate,
  parseFrame,
} from "../../src/streaming/spdy/frames.js";
import { HeaderCompressor, HeaderDecompressor, headersFrom } from "../../src/streaming/spdy/header-codec.js";

test("the SPDY/3 dictionary is the spec's 1423 bytes", () => {
  assert.equal(SPDY3_DICTIONARY.length, 1423);
  // Digest of the dictionary as spdystream and Chromium carry it.
  assert.equal(
    createHash("sha256").update(SPDY3_DICTIONARY).digest("hex"),
    "51d27341373f923f3cd88e1eb7162aeaa3723d7585ff2399201dc06498407f02",
  );
});

test("header blocks share one zlib context per direction", async () => {
  const c = new HeaderCompressor();
  const d = new HeaderDecompressor();
  const blocks = [
    headersFrom({ streamType: "error" }),
    headersFrom({ streamtype: "data", port: "8080", requestid: "1" }),
    headersFrom({ multi: ["a", "b"] }),
  ];
  const wire = [];
  for (const b of blocks) wire.push(await c.compress(b));
  for (let i = 0; i < blocks.length; i++) {
    const got = await d.decompress(wire[i]);
    assert.deepEqual(
      [...got],
      [...blocks[i]].map(([k, v]) => [k.toLowerCase(), v]),
    );
  }
  // Only the first block starts a zlib stream; the later ones continue it and mean nothing alone.
  assert.equal(wire[0][0], 0x78);
  const fresh = new HeaderDecompressor();
  await assert.rejects(fresh.decompress(wire[1]));
  fresh.close();
  c.close();
  d.close();
});

test("control and data frames round-trip through the parser", () => {
  const cases = [
    [encodeData(5, Buffer.from("hi"), true), { kind: "data", streamId: 5, flags: FLAG_FIN, data: Buffer.from("hi") }],
    [encodeRstStream(3, 5), { kind: "rstStream", streamId: 3, status: 5 }],
    [
      encodeSettings([{ id: 7, value: 1 << 20 }]),
      { kind: "settings", flags: 0, entries: [{ flags: 0, id: 7, value: 1 << 20 }] },
    ],
    [encodePing(2), { kind: "ping", id: 2 }],
    [encodeGoAway(7, 0), { kind: "goAway", lastGoodStreamId: 7, status: 0 }],
    [encodeWindowUpdate(1, 4096), { kind: "windowUpdate", streamId: 1, delta: 4096 }],
  ] as const;
  for (const [bytes, frame] of cases) {
    assert.equal(parseFrame(bytes.subarray(0, bytes.length - 1)), undefined, "incomplete frames wait for more bytes");
    assert.deepEqual(parseFrame(bytes), { frame, size: bytes.length });
  }
  // Control frame header: version 3 with the control bit, type, flags, 24-bit length.
  assert.deepEqual([...encodePing(1).subarray(0, 8)], [0x80, 0x03, 0x00, 0x06, 0x00, 0x00, 0x00, 0x04]);
});

/** Two sessions joined back to back in memory. */
function pair(): { client: SpdyConnection; server: SpdyConnection } {
  const ends: Duplex[] = [];
  const end = (i: number) =>
    new Duplex({
      read() {},
      write(chunk: Buffer, _e, cb) {
        ends[1 - i].push(chunk);
        cb();
      },
      final(cb) {
        ends[1 - i].push(null);
        cb();
      },
    });
  ends.push(end(0), end(1));
  return {
    client: new SpdyConnection(ends[0], { server: false, enforcePeerWindows: true, announceSettings: true }),
    server: new SpdyConnection(ends[1], { server: true }),
  };
}

test("a strict peer's window holds the sender back until the reader consumes", async () => {
  const { client, server } = pair();
  const accepted = new Promise<SpdyStream>((resolve) =>
    server.on("stream", (s: SpdyStream) => {
      s.reply();
      resolve(s);
    }),
  );
  const cs = await client.createStream({ streamtype: "stdout" });
  const ss = await accepted;
  cs.pause();
  const total = 1024 * 1024;
  let written = false;
  ss.write(Buffer.alloc(total, 1), () => (written = true));
  await new Promise((r) => setTimeout(r, 100));
  // The client's 64 KiB window plus the two sides' stream buffers, far from 1 MiB.
  assert.equal(written, false, "the writer is held back");
  assert.ok(cs.readableLength <= 128 * 1024, `client buffered ${cs.readableLength}`);
  let got = 0;
  cs.on("data", (c: Buffer) => (got += c.length));
  cs.resume();
  ss.end();
  await new Promise((r) => cs.once("end", r));
  assert.equal(got, total);
  client.destroy();
  server.destroy();
});
