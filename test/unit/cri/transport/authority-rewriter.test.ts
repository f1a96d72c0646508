// The :authority rewriter (src/cri/transport/authority-rewriter.ts) on hand-built client byte
// streams: what comes out, decoded by a fresh HPACK decoder as the server's would be, must carry
// the same requests with an acceptable :authority, bodies and other frames byte-identical, the
// same result however the input is cut into chunks, and garbage must be refused.

import assert from "node:assert/strict";
import { test } from "node:test";
import {
  authorityAcceptable,
  fixRequestAuthority,
  makeAuthorityAcceptable,
} from "../../../../src/cri/transport/authority.js";
import { AuthorityRewriter } from "../../../../src/cri/transport/authority-rewriter.js";
import {
  CLIENT_PREFACE,
  Flag,
  frame,
  FrameType,
  H2ProtocolError,
  headerBlockFrames,
  readFrameHeader,
} from "../../../../src/cri/transport/h2-frames.js";
import { huffmanEncode } from "../../../../src/cri/transport/hpack-huffman.js";
import { HpackDecoder, writeInteger } from "../../../../src/cri/transport/hpack.js";

// ---- a client-side encoder that uses the dynamic table the way grpc-go's does ----

type Rep =
  | { index: number }
  | { name: string | number; value: string; as: "incremental" | "without" | "never"; huffman?: boolean }
  | { sizeUpdate: number };

function str(out: number[], s: string, huffman = false): void {
  if (huffman) {
    const h = huffmanEncode(s);
    writeInteger(out, 0x80, 7, h.length);
    out.push(...h);
  } else {
    writeInteger(out, 0, 7, s.length);
    for (const c of Buffer.from(s, "latin1")) out.push(c);
  }
}

function block(reps: Rep[]): Buffer {
  const out: number[] = [];
  for (const r of reps) {
    if ("sizeUpdate" in r) writeInteger(out, 0x20, 5, r.sizeUpdate);
    else if ("index" in r) writeInteger(out, 0x80, 7, r.index);
    else {
      const [first, bits] = r.as === "incremental" ? [0x40, 6] : r.as === "never" ? [0x10, 4] : [0x00, 4];
      writeInteger(out, first, bits, typeof r.name === "number" ? r.name : 0);
      if (typeof r.name === "string") str(out, r.name, r.huffman);
      str(out, r.value, r.huffman);
    }
  }
  return Buffer.from(out);
}

const SETTINGS = frame(FrameType.SETTINGS, 0, 0, Buffer.from([0, 4, 0, 0x40, 0, 0])); // INITIAL_WINDOW_SIZE
const WINDOW_UPDATE = frame(FrameType.WINDOW_UPDATE, 0, 0, Buffer.from([0, 0x0e, 0, 0x01]));
const grpcMessage = (n: number, fill: number) => Buffer.concat([Buffer.from([0, 0, 0, 0, n]), Buffer.alloc(n, fill)]);
const data = (stream: number, body: Buffer, end = true) =>
  frame(FrameType.DATA, end ? Flag.END_STREAM : 0, stream, body);
const headers = (stream: number, b: Buffer, flags: number = Flag.END_HEADERS) =>
  frame(FrameType.HEADERS, flags, stream, b);

/** A grpc-go style request: first with literals added to the table, later ones indexed. */
function firstRequest(authority: string, path: string): Rep[] {
  return [
    { index: 3 }, // :method POST
    { index: 6 }, // :scheme http
    { name: 4, value: path, as: "incremental", huffman: true }, // :path
    { name: 1, value: authority, as: "incremental", huffman: true }, // :authority
    { name: 31, value: "application/grpc", as: "incremental", huffman: true }, // content-type
    { name: "user-agent", value: "grpc-go/1.58.3", as: "incremental" },
    { name: "te", value: "trailers", as: "incremental" },
  ];
}
// After firstRequest the dynamic table is: 62 te, 63 user-agent, 64 content-type, 65 :authority, 66 :path
const secondRequest: Rep[] = [
  { index: 3 },
  { index: 6 },
  { index: 66 },
  { index: 65 },
  { index: 64 },
  { index: 63 },
  { name: "grpc-timeout", value: "1999881u", as: "without" },
  { index: 62 },
];

interface Seen {
  preface: boolean;
  /** Decoded header lists per stream in order (request, then trailers). */
  blocks: { stream: number; fields: [string, string][]; flags: number; priority?: Buffer }[];
  /** Every non-header frame, verbatim. */
  others: Buffer[];
  maxFrame: number;
}

/** Parses a client stream as the server would, with a fresh HPACK decoder. */
function parse(stream: Buffer): Seen {
  assert.ok(stream.subarray(0, 24).equals(CLIENT_PREFACE), "starts with the preface");
  const dec = new HpackDecoder();
  const seen: Seen = { preface: true, blocks: [], others: [], maxFrame: 0 };
  let at = 24;
  let pending: { stream: number; frags: Buffer[]; flags: number; priority?: Buffer } | undefined;
  while (at < stream.length) {
    const h = readFrameHeader(stream, at);
    const payload = stream.subarray(at + 9, at + 9 + h.length);
    seen.maxFrame = Math.max(seen.maxFrame, h.length);
    if (h.type === FrameType.HEADERS) {
      assert.equal(pending, undefined);
      let p = 0;
      let pad = 0;
      if (h.flags & Flag.PADDED) pad = payload[p++];
      let priority: Buffer | undefined;
      if (h.flags & Flag.PRIORITY) {
        priority = payload.subarray(p, p + 5);
        p += 5;
      }
      pending = { stream: h.streamId, frags: [payload.subarray(p, payload.length - pad)], flags: h.flags, priority };
    } else if (h.type === FrameType.CONTINUATION) {
      assert.equal(pending?.stream, h.streamId);
      pending!.frags.push(payload);
    } else {
      assert.equal(pending, undefined, "no frame inside a header block");
      seen.others.push(stream.subarray(at, at + 9 + h.length));
    }
    if ((h.type === FrameType.HEADERS || h.type === FrameType.CONTINUATION) && h.flags & Flag.END_HEADERS) {
      const fields = dec.decode(Buffer.concat(pending!.frags)).fields.map((f) => [f.name, f.value] as [string, string]);
      seen.blocks.push({ stream: pending!.stream, fields, flags: pending!.flags, priority: pending!.priority });
      pending = undefined;
    }
    at += 9 + h.length;
  }
  assert.equal(at, stream.length, "ends on a frame boundary");
  return seen;
}

function run(input: Buffer, cuts: number[] = []): Buffer {
  const rw = new AuthorityRewriter();
  const out: Buffer[] = [];
  let from = 0;
  for (const c of [...cuts, input.length]) {
    out.push(...rw.push(input.subarray(from, c)));
    from = c;
  }
  return Buffer.concat(out);
}

const PATH = "/runtime.v1.RuntimeService/Version";
const SOCK = "/run/berth/berth.sock";

function kubelet126Stream(): Buffer {
  return Buffer.concat([
    CLIENT_PREFACE,
    SETTINGS,
    WINDOW_UPDATE,
    headers(1, block(firstRequest(SOCK, PATH)), Flag.END_HEADERS),
    data(1, grpcMessage(0, 0)),
    frame(FrameType.PING, 0, 0, Buffer.from("12345678")),
    headers(3, block(secondRequest)),
    data(3, grpcMessage(300, 0xab)),
    frame(FrameType.RST_STREAM, 0, 3, Buffer.from([0, 0, 0, 8])),
  ]);
}

test("authority rule: nghttp2's allowed octets, percent-encoding the rest, a missing authority added", () => {
  for (const ok of ["localhost", "%2Frun%2Fberth.sock", "127.0.0.1:10010", "[::1]:80", "a~b_c-d.e!$&'()*+,;=@"]) {
    assert.ok(authorityAcceptable(ok), ok);
  }
  for (const bad of [
    "/run/berth.sock",
    "",
    " ",
    "\t",
    "a b",
    "a#b",
    "a?b",
    "a\\b",
    "a^b",
    "a`b",
    "a{b",
    "a|b",
    "a}b",
    "a<b",
    'a"b',
    "\x7f",
    "\xe9",
  ]) {
    assert.ok(!authorityAcceptable(bad), JSON.stringify(bad));
  }
  assert.equal(makeAuthorityAcceptable(SOCK), "%2Frun%2Fberth%2Fberth.sock");
  assert.equal(makeAuthorityAcceptable(" a\xe9"), "%20a%E9");
  assert.equal(makeAuthorityAcceptable(""), "localhost");
  const f = (name: string, value: string) => ({ name, value, kind: "without" as const });
  assert.equal(fixRequestAuthority([f(":path", "/x"), f(":authority", "localhost")]), undefined);
  assert.equal(fixRequestAuthority([f(":path", "/x"), f("host", "example")]), undefined);
  assert.deepEqual(
    fixRequestAuthority([f(":path", "/x"), f("host", "/bad")])?.map((x) => [x.name, x.value]),
    [
      [":authority", "localhost"],
      [":path", "/x"],
      ["host", "/bad"],
    ],
  );
});

test("a kubelet 1.26 stream: every request gets the percent-encoded path, everything else is unchanged", () => {
  const input = kubelet126Stream();
  const out = parse(run(input));
  const want = parse(input);
  assert.equal(out.blocks.length, 2);
  for (let i = 0; i < 2; i++) {
    const expected = want.blocks[i].fields.map(([n, v]) => [n, n === ":authority" ? "%2Frun%2Fberth%2Fberth.sock" : v]);
    assert.deepEqual(out.blocks[i].fields, expected);
    assert.equal(out.blocks[i].stream, want.blocks[i].stream);
    assert.equal(out.blocks[i].flags & Flag.END_STREAM, want.blocks[i].flags & Flag.END_STREAM);
  }
  // SETTINGS, WINDOW_UPDATE, DATA, PING, DATA, RST_STREAM: byte for byte, in order.
  assert.deepEqual(out.others, want.others);
});

test("the output is the same however the input is cut into chunks (every single and double cut)", () => {
  const input = kubelet126Stream();
  const whole = run(input);
  for (let a = 0; a <= input.length; a++) assert.ok(run(input, [a]).equals(whole), `cut at ${a}`);
  for (let a = 0; a < input.length; a += 7) {
    for (let b = a; b <= input.length; b += 13) assert.ok(run(input, [a, b]).equals(whole), `cuts at ${a}, ${b}`);
  }
  // One byte at a time.
  assert.ok(
    run(
      input,
      Array.from({ length: input.length }, (_, i) => i),
    ).equals(whole),
  );
});

test("acceptable authorities pass byte for byte (localhost, percent-encoded path, any host name)", () => {
  for (const authority of ["localhost", "%2Frun%2Fberth%2Fberth.sock", "berth.example:1234"]) {
    const input = Buffer.concat([
      CLIENT_PREFACE,
      SETTINGS,
      headers(1, block(firstRequest(authority, PATH))),
      data(1, grpcMessage(5, 1)),
      headers(3, block(secondRequest)),
      data(3, grpcMessage(5, 2)),
    ]);
    const rw = new AuthorityRewriter();
    assert.ok(Buffer.concat(rw.push(input)).equals(input), authority);
    assert.equal(rw.rewriting, false);
    assert.equal(rw.requests, 2);
  }
});

test("rewriting starts mid-connection: both dynamic tables stay consistent for later indexed fields", () => {
  // Request 1 (acceptable) is forwarded raw, so the server's table gets its entries. Request 2
  // names a bad authority and adds entries; request 3 indexes entries from both.
  const second: Rep[] = [
    { index: 3 },
    { index: 6 },
    { index: 66 }, // :path from request 1
    { name: 1, value: "/other/sock", as: "incremental" }, // now 62; the rest shift by one
    { name: "x-trace", value: "abc", as: "incremental" }, // now 62
  ];
  const third: Rep[] = [
    { index: 3 },
    { index: 6 },
    { index: 68 }, // :path
    { index: 63 }, // :authority /other/sock
    { index: 62 }, // x-trace
    { index: 66 }, // content-type
    { index: 64 }, // te
  ];
  const input = Buffer.concat([
    CLIENT_PREFACE,
    SETTINGS,
    headers(1, block(firstRequest("localhost", PATH))),
    headers(3, block(second)),
    headers(5, block(third)),
  ]);
  const rw = new AuthorityRewriter();
  const out = parse(Buffer.concat(rw.push(input)));
  assert.equal(rw.rewriting, true);
  assert.deepEqual(out.blocks[1].fields, [
    [":method", "POST"],
    [":scheme", "http"],
    [":path", PATH],
    [":authority", "%2Fother%2Fsock"],
    ["x-trace", "abc"],
  ]);
  assert.deepEqual(out.blocks[2].fields, [
    [":method", "POST"],
    [":scheme", "http"],
    [":path", PATH],
    [":authority", "%2Fother%2Fsock"],
    ["x-trace", "abc"],
    ["content-type", "application/grpc"],
    ["te", "trailers"],
  ]);
});

test("CONTINUATION, PADDED and PRIORITY: the block is reassembled, priority and END_STREAM kept", () => {
  const b = block(firstRequest(SOCK, PATH));
  const padded = Buffer.concat([
    Buffer.from([4]),
    Buffer.from([0x80, 0, 0, 1, 15]),
    b.subarray(0, 10),
    Buffer.alloc(4),
  ]);
  const input = Buffer.concat([
    CLIENT_PREFACE,
    frame(FrameType.HEADERS, Flag.PADDED | Flag.PRIORITY | Flag.END_STREAM, 1, padded),
    frame(FrameType.CONTINUATION, 0, 1, b.subarray(10, 20)),
    frame(FrameType.CONTINUATION, Flag.END_HEADERS, 1, b.subarray(20)),
  ]);
  for (let cut = 0; cut <= input.length; cut++) {
    const out = parse(run(input, [cut]));
    assert.equal(out.blocks.length, 1);
    assert.deepEqual(
      out.blocks[0].fields.find(([n]) => n === ":authority"),
      [":authority", "%2Frun%2Fberth%2Fberth.sock"],
    );
    assert.ok(out.blocks[0].flags & Flag.END_STREAM);
    assert.ok(out.blocks[0].flags & Flag.PRIORITY);
    assert.deepEqual(out.blocks[0].priority, Buffer.from([0x80, 0, 0, 1, 15]));
  }
  // A block that needs no change is forwarded as the same three frames, padding and all.
  const fine = Buffer.concat([
    CLIENT_PREFACE,
    frame(
      FrameType.HEADERS,
      Flag.PADDED,
      1,
      Buffer.concat([Buffer.from([2]), block([{ index: 3 }, { index: 4 }]), Buffer.alloc(2)]),
    ),
    frame(FrameType.CONTINUATION, Flag.END_HEADERS, 1, block([{ name: 1, value: "localhost", as: "without" }])),
  ]);
  assert.ok(run(fine).equals(fine));
});

test("a re-encoded block larger than 16384 bytes is split into HEADERS + CONTINUATION", () => {
  const big = "x".repeat(40_000);
  const reps: Rep[] = [...firstRequest(SOCK, PATH), { name: "x-big", value: big, as: "without" }];
  const b = block(reps);
  const input = Buffer.concat([CLIENT_PREFACE, ...headerBlockFrames(1, b), data(1, grpcMessage(3, 9))]);
  const outBuf = run(input, [100, 20_000, 30_001]);
  const out = parse(outBuf);
  assert.ok(out.maxFrame <= 16384, `largest frame ${out.maxFrame}`);
  assert.deepEqual(out.blocks[0].fields.at(-1), ["x-big", big]);
  assert.deepEqual(out.blocks[0].fields[3], [":authority", "%2Frun%2Fberth%2Fberth.sock"]);
  assert.deepEqual(out.others, [data(1, grpcMessage(3, 9))]);
});

test("missing or empty authority gets localhost; trailers get nothing added", () => {
  const noAuthority = block([{ index: 3 }, { index: 6 }, { name: 4, value: PATH, as: "without" }]);
  const empty = block([{ index: 3 }, { index: 6 }, { index: 1 }, { name: 4, value: PATH, as: "without" }]);
  const trailers = block([{ name: "grpc-status", value: "0", as: "without" }]);
  const input = Buffer.concat([
    CLIENT_PREFACE,
    headers(1, noAuthority),
    headers(1, trailers, Flag.END_HEADERS | Flag.END_STREAM),
    headers(3, empty),
  ]);
  const out = parse(run(input));
  assert.deepEqual(out.blocks[0].fields, [
    [":authority", "localhost"],
    [":method", "POST"],
    [":scheme", "http"],
    [":path", PATH],
  ]);
  assert.deepEqual(out.blocks[1].fields, [["grpc-status", "0"]]);
  assert.deepEqual(out.blocks[2].fields[2], [":authority", "localhost"]);
});

test("never-indexed fields stay never-indexed when a block is re-encoded", () => {
  const reps: Rep[] = [...firstRequest(SOCK, PATH), { name: "authorization", value: "Bearer t", as: "never" }];
  const out = run(Buffer.concat([CLIENT_PREFACE, headers(1, block(reps))]));
  const fragment = out.subarray(24 + 9);
  const r = new HpackDecoder().decode(fragment);
  assert.equal(r.fields.find((f) => f.name === "authorization")?.kind, "never");
});

test("garbage is refused with H2ProtocolError", () => {
  const ok = block(firstRequest("localhost", PATH));
  const cases: [string, Buffer][] = [
    ["bad preface", Buffer.from("GET / HTTP/1.1\r\nHost: x\r\n\r\n")],
    ["random bytes", Buffer.from(Array.from({ length: 64 }, (_, i) => (i * 37 + 11) & 0xff))],
    ["bad HPACK (index 0)", Buffer.concat([CLIENT_PREFACE, headers(1, Buffer.from([0x80]))])],
    ["bad HPACK (unknown index)", Buffer.concat([CLIENT_PREFACE, headers(1, Buffer.from([0xff, 0x10]))])],
    [
      "CONTINUATION without HEADERS",
      Buffer.concat([CLIENT_PREFACE, frame(FrameType.CONTINUATION, Flag.END_HEADERS, 1, ok)]),
    ],
    [
      "CONTINUATION on another stream",
      Buffer.concat([
        CLIENT_PREFACE,
        headers(1, ok.subarray(0, 5), 0),
        frame(FrameType.CONTINUATION, Flag.END_HEADERS, 3, ok.subarray(5)),
      ]),
    ],
    [
      "DATA inside a header block",
      Buffer.concat([CLIENT_PREFACE, headers(1, ok.subarray(0, 5), 0), data(1, Buffer.alloc(3))]),
    ],
    [
      "HEADERS inside a header block",
      Buffer.concat([CLIENT_PREFACE, headers(1, ok.subarray(0, 5), 0), headers(3, ok)]),
    ],
    ["header block on stream 0", Buffer.concat([CLIENT_PREFACE, headers(0, ok)])],
    [
      "padding longer than the frame",
      Buffer.concat([
        CLIENT_PREFACE,
        frame(FrameType.HEADERS, Flag.PADDED | Flag.END_HEADERS, 1, Buffer.from([200, 0x82])),
      ]),
    ],
    [
      "PUSH_PROMISE from a client",
      Buffer.concat([CLIENT_PREFACE, frame(FrameType.PUSH_PROMISE, Flag.END_HEADERS, 1, Buffer.alloc(4))]),
    ],
  ];
  for (const [what, input] of cases) {
    assert.throws(() => run(input), H2ProtocolError, what);
    assert.throws(() => run(input, [1, 25, 30]), H2ProtocolError, `${what} (in pieces)`);
  }
});

test("a header block over the cap is refused on the frame header, before its payload arrives", () => {
  const rw = new AuthorityRewriter({ maxHeaderBlock: 1 << 20 });
  rw.push(CLIENT_PREFACE);
  const header = frame(FrameType.HEADERS, 0, 1).subarray(0, 9);
  header.writeUIntBE(16384, 0, 3);
  // 64 full HEADERS/CONTINUATION frames are exactly 1 MiB; the 65th is refused.
  let refusedAt = -1;
  for (let i = 0; i < 70 && refusedAt < 0; i++) {
    const h = Buffer.from(header);
    if (i > 0) h[3] = FrameType.CONTINUATION;
    try {
      rw.push(h);
      rw.push(Buffer.alloc(16384, 0x82));
    } catch (err) {
      assert.ok(err instanceof H2ProtocolError);
      refusedAt = i;
    }
  }
  assert.equal(refusedAt, 64);
});

test("stopWhen holds the rest of the input; resume() processes it, takeHeld() hands it on raw", () => {
  const input = kubelet126Stream();
  for (const how of ["resume", "raw"]) {
    const rw: AuthorityRewriter = new AuthorityRewriter({ stopWhen: () => rw.requests > 0 });
    const first = Buffer.concat(rw.push(input));
    assert.ok(rw.isStopped);
    assert.equal(rw.requests, 1);
    // It stopped right after the first request's HEADERS frame.
    assert.equal(parse(first).blocks.length, 1);
    assert.equal(parse(first).others.length, 2);
    if (how === "resume") {
      const rest = Buffer.concat([...rw.resume(), ...rw.push(Buffer.alloc(0))]);
      assert.ok(Buffer.concat([first, rest]).equals(run(input)));
    } else {
      const held = Buffer.concat(rw.takeHeld());
      assert.ok(input.subarray(input.length - held.length).equals(held));
      assert.equal(
        input.length - held.length,
        24 + SETTINGS.length + WINDOW_UPDATE.length + 9 + block(firstRequest(SOCK, PATH)).length,
      );
    }
  }
});

test("intercepted control frames: the interceptor sees SETTINGS and PING and can drop them", () => {
  const seen: string[] = [];
  const rw = new AuthorityRewriter({
    intercept: (type, flags, payload) => {
      seen.push(`${type}/${flags}/${payload.length}`);
      return type === FrameType.SETTINGS && (flags & Flag.ACK) !== 0;
    },
  });
  const ack = frame(FrameType.SETTINGS, Flag.ACK, 0);
  const ping = frame(FrameType.PING, 0, 0, Buffer.alloc(8, 7));
  const input = Buffer.concat([CLIENT_PREFACE, SETTINGS, ack, ping]);
  const out = Buffer.concat(rw.push(input));
  assert.deepEqual(seen, ["4/0/6", "4/1/0", "6/0/8"]);
  assert.ok(out.equals(Buffer.concat([CLIENT_PREFACE, SETTINGS, ping])));
});
