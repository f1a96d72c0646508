// The pure parts of berth's gRPC server (src/cri/transport): message framing across arbitrary
// DATA splits and the receive limit, grpc-timeout parsing, grpc-message encoding, status blocks.
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  BadFrameError,
  encodeMessage,
  MessageReader,
  MessageTooLargeError,
} from "../../../../src/cri/transport/grpc-frame.js";
import { parseGrpcTimeout } from "../../../../src/cri/transport/grpc-timeout.js";
import { decodeGrpcMessage, encodeGrpcMessage, statusHeaders } from "../../../../src/cri/transport/grpc-trailers.js";
import { RESPONSE_BLOCK, statusBlock } from "../../../../src/cri/transport/h2-server-stream.js";
import { HpackDecoder } from "../../../../src/cri/transport/hpack.js";
import { isGrpcContentType } from "../../../../src/cri/transport/grpc-routes.js";
import { Metadata } from "@grpc/grpc-js";

test("encodeMessage: flag 0, big-endian length, payload", () => {
  assert.deepEqual([...encodeMessage(Buffer.from("abc"))], [0, 0, 0, 0, 3, 0x61, 0x62, 0x63]);
  assert.deepEqual([...encodeMessage(Buffer.alloc(0))], [0, 0, 0, 0, 0]);
});

test("encodeMessage of a large payload: framed once per payload object, the same bytes as a fresh framing", () => {
  const big = Buffer.alloc(100_000, 7);
  const a = encodeMessage(big);
  assert.equal(a.length, 100_005);
  assert.deepEqual([...a.subarray(0, 5)], [0, 0, 1, 0x86, 0xa0]);
  assert.ok(a.subarray(5).equals(big));
  assert.equal(encodeMessage(big), a, "the same payload object: the same framed buffer");
  const other = Buffer.from(big);
  const b = encodeMessage(other);
  assert.notEqual(b, a, "another payload object with equal bytes is framed on its own");
  assert.ok(b.equals(a));
  assert.notEqual(encodeMessage(Buffer.from("abc")), encodeMessage(Buffer.from("abc")));
});

test("MessageReader: messages come out whole however the bytes are split", () => {
  const msgs = [Buffer.from("hello"), Buffer.alloc(0), Buffer.alloc(300, 7), Buffer.from("x")];
  const wire = Buffer.concat(msgs.map(encodeMessage));
  for (const size of [1, 2, 3, 5, 6, 7, 64, 299, wire.length]) {
    const r = new MessageReader(1000);
    const out: Buffer[] = [];
    for (let off = 0; off < wire.length; off += size) {
      for (const m of r.push(wire.subarray(off, off + size))) {
        assert.equal(m.compressed, false);
        out.push(Buffer.from(m.payload));
      }
    }
    assert.deepEqual(out, msgs, `split every ${size} bytes`);
    assert.equal(r.atBoundary, true);
  }
});

test("MessageReader: a partial message is held (not at a boundary)", () => {
  const r = new MessageReader(1000);
  assert.deepEqual(r.push(encodeMessage(Buffer.from("hello")).subarray(0, 7)), []);
  assert.equal(r.atBoundary, false);
  const r2 = new MessageReader(1000);
  assert.deepEqual(r2.push(Buffer.from([0, 0])), []);
  assert.equal(r2.atBoundary, false);
});

test("MessageReader: the compressed flag is reported, other flags are refused", () => {
  const wire = encodeMessage(Buffer.from("z"));
  wire[0] = 1;
  assert.equal(new MessageReader(10).push(wire)[0]!.compressed, true);
  wire[0] = 2;
  assert.throws(() => new MessageReader(10).push(wire), BadFrameError);
});

test("MessageReader: a declared length over the limit throws before its bytes arrive", () => {
  const r = new MessageReader(4);
  assert.deepEqual(r.push(encodeMessage(Buffer.from("four"))).length, 1);
  const head = encodeMessage(Buffer.alloc(5)).subarray(0, 5);
  assert.throws(
    () => r.push(head),
    (err: unknown) => err instanceof MessageTooLargeError && err.length === 5 && err.limit === 4,
  );
});

test("parseGrpcTimeout: every unit, absent, malformed", () => {
  assert.equal(parseGrpcTimeout(undefined), undefined);
  assert.equal(parseGrpcTimeout("2H"), 7_200_000);
  assert.equal(parseGrpcTimeout("3M"), 180_000);
  assert.equal(parseGrpcTimeout("10S"), 10_000);
  assert.equal(parseGrpcTimeout("250m"), 250);
  assert.equal(parseGrpcTimeout("1500u"), 1.5);
  assert.equal(parseGrpcTimeout("2000000n"), 2);
  assert.equal(parseGrpcTimeout("99999999S"), 99_999_999_000);
  for (const bad of ["", "10", "S", "123456789S", "1.5S", "10s", "-1S", " 1S"]) {
    assert.throws(() => parseGrpcTimeout(bad), /malformed grpc-timeout/, bad);
  }
});

test("grpc-message: printable ASCII as is, '%' and everything else as %XX of UTF-8", () => {
  assert.equal(encodeGrpcMessage("container abc not found"), "container abc not found");
  assert.equal(encodeGrpcMessage("100% done"), "100%25 done");
  assert.equal(encodeGrpcMessage("line1\nline2"), "line1%0Aline2");
  assert.equal(encodeGrpcMessage("café ✓"), "caf%C3%A9 %E2%9C%93");
  for (const s of ["100% done", "a\r\nb\tc", "café ✓ 日本", "%%41", ""]) {
    assert.equal(decodeGrpcMessage(encodeGrpcMessage(s)), s);
  }
  assert.equal(decodeGrpcMessage("bad %zz and %4"), "bad %zz and %4");
});

test("status headers: code, encoded message, metadata without transport names", () => {
  const md = new Metadata();
  md.set("x-berth-hint", "retry");
  md.set("grpc-status", "0");
  md.set("trace-bin", Buffer.from([1, 2, 3]));
  assert.deepEqual(statusHeaders(5, 'pod "x" not found', md), {
    "x-berth-hint": "retry",
    "trace-bin": Buffer.from([1, 2, 3]).toString("base64"),
    "grpc-status": "5",
    "grpc-message": 'pod "x" not found',
  });
  assert.deepEqual(statusHeaders(0, ""), { "grpc-status": "0" });
});

test("a trailers-only block: the response headers' block and the status block, concatenated", () => {
  const md = new Metadata();
  md.add("x-many", "a");
  md.add("x-many", "b");
  const block = Buffer.concat([RESPONSE_BLOCK, statusBlock(12, "nope 100%", md, { "grpc-accept-encoding": "gzip" })]);
  const fields = new HpackDecoder().decode(block).fields.map((f) => [f.name, f.value]);
  assert.deepEqual(fields, [
    [":status", "200"],
    ["content-type", "application/grpc"],
    ["x-many", "a"],
    ["x-many", "b"],
    ["grpc-status", "12"],
    ["grpc-message", "nope 100%25"],
    ["grpc-accept-encoding", "gzip"],
  ]);
});

test("content-type: application/grpc with an optional +subtype or ;parameters", () => {
  for (const ok of ["application/grpc", "application/grpc+proto", "application/grpc;charset=utf-8"]) {
    assert.equal(isGrpcContentType(ok), true, ok);
  }
  for (const bad of [undefined, "", "application/json", "application/grpcx", "application/grpc-web", "text/plain"]) {
    assert.equal(isGrpcContentType(bad), false, String(bad));
  }
});
