// readRequestHeaders (src/cri/transport/h2-request-headers.ts): which decoded request header lists
// become a call's headers and which are malformed (RFC 9113 8.2, 8.3).

import { test } from "node:test";
import assert from "node:assert/strict";
import { readRequestHeaders } from "../../../../src/cri/transport/h2-request-headers.js";
import type { HeaderField } from "../../../../src/cri/transport/hpack.js";

const REQUEST: [string, string][] = [
  [":method", "POST"],
  [":scheme", "http"],
  [":path", "/runtime.v1.RuntimeService/Version"],
  [":authority", "localhost"],
  ["content-type", "application/grpc"],
  ["te", "trailers"],
  ["grpc-timeout", "119999m"],
];

function fields(list: [string, string][]): HeaderField[] {
  return list.map(([name, value]) => ({ name, value, kind: "indexed" }));
}

test("a gRPC request's fields become its headers; a repeated regular field becomes an array", () => {
  const h = readRequestHeaders(fields([...REQUEST, ["x-a", "1"], ["x-a", "2"], ["x-a", "3"]]));
  assert.ok(h);
  assert.equal(h[":path"], "/runtime.v1.RuntimeService/Version");
  assert.equal(h["grpc-timeout"], "119999m");
  assert.deepEqual(h["x-a"], ["1", "2", "3"]);
  assert.equal(Object.getPrototypeOf(h), null);
});

test("RFC 9113 8.2.1: a name with uppercase, a control, space or DEL, or a non-ASCII octet is malformed", () => {
  for (const name of ["X-Upper", "x-a b", "x-\u0001", "x-\u007f", "x-caf\u00e9", "x-\u00c9", ""]) {
    assert.equal(readRequestHeaders(fields([...REQUEST, [name, "v"]])), null, JSON.stringify(name));
  }
  // every other visible ASCII octet is allowed in a name
  assert.ok(readRequestHeaders(fields([...REQUEST, ["x-!#$%&'*+.^_`|~0-9", "v"]])));
});

test("pseudo-header rules: unknown, repeated or after a regular field; required ones missing", () => {
  assert.equal(readRequestHeaders(fields([...REQUEST, [":status", "200"]])), null);
  assert.equal(readRequestHeaders(fields([[":method", "POST"], ...REQUEST.slice(0)])), null);
  assert.equal(readRequestHeaders(fields([["x-a", "1"], ...REQUEST])), null);
  assert.equal(readRequestHeaders(fields(REQUEST.filter(([n]) => n !== ":path"))), null);
});

test("connection-specific fields and a TE other than trailers are malformed", () => {
  assert.equal(readRequestHeaders(fields([...REQUEST, ["connection", "keep-alive"]])), null);
  assert.equal(readRequestHeaders(fields([...REQUEST.filter(([n]) => n !== "te"), ["te", "gzip"]])), null);
});
