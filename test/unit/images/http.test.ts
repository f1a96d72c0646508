// The pull's HTTP client (src/images/http.ts) against a loopback node:http server: connections
// kept alive and reused, bodies streamed, dropped and read as text, request bodies sent, an
// AbortSignal ending a request mid-body, a silent server timed out. TLS, redirects, auth and
// mirrors are exercised through the registry client in test/e2e/images-registry and images-hosts.
import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";

import { HttpClient } from "../../../src/images/http.js";

let server: Server;
let base: string;
let connections = 0;

function route(req: IncomingMessage, res: ServerResponse): void {
  const path = req.url ?? "/";
  if (path === "/hello") {
    res.setHeader("x-twice", ["a", "b"]);
    res.end("hello");
  } else if (path === "/big") {
    res.end(Buffer.alloc(1 << 20, 7)); // 1 MiB: more than dump() reads
  } else if (path === "/echo") {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => res.end(`${req.method} ${req.headers["content-length"]} ${Buffer.concat(chunks).toString()}`));
  } else if (path === "/stall-body") {
    res.writeHead(200, { "content-length": "10" });
    res.write("12345"); // and never the rest
  } else if (path === "/stall-headers") {
    // never answers
  } else {
    res.statusCode = 404;
    res.end("no such thing");
  }
}

before(async () => {
  server = createServer(route);
  server.on("connection", () => connections++);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

test("status, headers and body; a kept-alive connection serves the next requests", async () => {
  const client = new HttpClient();
  const before = connections;
  const res = await client.request(`${base}/hello`, { method: "GET", headers: { "user-agent": "t" } });
  assert.equal(res.statusCode, 200);
  assert.equal(res.headers["x-twice"], "a, b");
  assert.equal(await res.text(), "hello");
  const missing = await client.request(`${base}/nope`, { method: "GET", headers: {} });
  assert.equal(missing.statusCode, 404);
  await missing.dump();
  const again = await client.request(new URL(`${base}/hello`), { method: "HEAD", headers: {} });
  assert.equal(again.statusCode, 200);
  assert.equal(await again.text(), "");
  assert.equal(connections - before, 1, "one connection for three requests in turn");
});

test("a request body is sent with its length", async () => {
  const client = new HttpClient();
  const res = await client.request(`${base}/echo`, { method: "POST", headers: {}, body: "a=1&b=é" });
  assert.equal(await res.text(), "POST 8 a=1&b=é");
});

test("dump() of a long body closes that connection instead of reading it all", async () => {
  const client = new HttpClient();
  const res = await client.request(`${base}/big`, { method: "GET", headers: {} });
  await res.dump();
  assert.ok(res.body.destroyed);
  const before = connections;
  assert.equal(await (await client.request(`${base}/hello`, { method: "GET", headers: {} })).text(), "hello");
  assert.equal(connections - before, 1, "a new connection after the dropped one");
});

test("aborting the signal ends a body stream that is still coming", async () => {
  const client = new HttpClient();
  const ac = new AbortController();
  const res = await client.request(`${base}/stall-body`, { method: "GET", headers: {}, signal: ac.signal });
  assert.equal(res.statusCode, 200);
  const reading = res.text();
  ac.abort();
  // node ends the response with "aborted" (ECONNRESET); the content store then throws the
  // signal's own reason (src/images/content-store.ts)
  await assert.rejects(reading, (err: NodeJS.ErrnoException) => err.name === "AbortError" || err.code === "ECONNRESET");
});

test("an aborted signal refuses the request", async () => {
  const client = new HttpClient();
  await assert.rejects(
    client.request(`${base}/hello`, { method: "GET", headers: {}, signal: AbortSignal.abort() }),
    (err: Error) => err.name === "AbortError",
  );
});

test("a server that goes silent fails with ETIMEDOUT, before the headers and in the body", async () => {
  const client = new HttpClient(undefined, { inactivityMs: 200 });
  await assert.rejects(
    client.request(`${base}/stall-headers`, { method: "GET", headers: {} }),
    (err: NodeJS.ErrnoException) => err.code === "ETIMEDOUT",
  );
  const res = await client.request(`${base}/stall-body`, { method: "GET", headers: {} });
  await assert.rejects(res.text(), (err: NodeJS.ErrnoException) => /ETIMEDOUT|ECONNRESET/.test(String(err.code)));
});

test("a refused connection fails with ECONNREFUSED", async () => {
  const probe = createServer();
  await new Promise<void>((r) => probe.listen(0, "127.0.0.1", r));
  const port = (probe.address() as AddressInfo).port;
  await new Promise((r) => probe.close(r));
  await assert.rejects(
    new HttpClient().request(`http://127.0.0.1:${port}/`, { method: "GET", headers: {} }),
    (err: NodeJS.ErrnoException) => err.code === "ECONNREFUSED",
  );
});
