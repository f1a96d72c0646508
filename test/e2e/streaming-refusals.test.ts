// The streaming server end to end: tokens, invalid requests, clients that disconnect, stop reading
// or never open their streams, and TLS.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { StreamingServer } from "../../src/streaming/server.js";
import { SpdyConnection } from "../../src/streaming/spdy/connection.js";
import { RequestCache } from "../../src/streaming/tokens.js";
import { InvalidArgumentError, ResourceExhaustedError } from "../../src/util/errors.js";
import { SpdyCommandSession, exitCodeOf, spdyUpgrade } from "../helpers/spdy-client.js";
import { ChannelClient, wsOpen } from "../helpers/ws-client.js";
import {
  V4,
  alive,
  base,
  backend,
  delay,
  eventually,
  exec,
  server,
  tmp,
  useStreamingServer,
  watch,
} from "../helpers/streaming-fixtures.js";

describe("streaming server", () => {
  useStreamingServer();

  test("bad, reused and expired tokens get 404", async () => {
    const bad = `${base}/exec/notatoken`;
    assert.equal((await spdyUpgrade(bad, V4)).status, 404);
    assert.equal((await wsOpen(bad, ["v5.channel.k8s.io"])).status, 404);
    assert.equal((await fetch(bad)).status, 404);

    const url = exec(["true"]);
    const first = await SpdyCommandSession.open(url, V4, { stdout: true, stderr: true });
    await first.result();
    await first.close();
    assert.equal((await spdyUpgrade(url, V4)).status, 404);
    assert.equal((await wsOpen(url, ["v5.channel.k8s.io"])).status, 404);

    // A token is only good for the endpoint it was issued for.
    const swapped = exec(["true"]).replace("/exec/", "/attach/");
    assert.equal((await spdyUpgrade(swapped, V4)).status, 404);

    const short = new StreamingServer({ backend, tokenTtlMs: 1 });
    await short.start();
    try {
      const expired = short.getExecUrl({
        containerId: "c",
        cmd: ["true"],
        tty: false,
        stdin: false,
        stdout: true,
        stderr: false,
      });
      await delay(20);
      assert.equal((await spdyUpgrade(expired, V4)).status, 404);
    } finally {
      await short.stop();
    }
  });

  test("the request cache: single use, TTL, bounded size", () => {
    let now = 0;
    const cache = new RequestCache<string>(1000, 2, () => now);
    const t1 = cache.insert("a");
    assert.match(t1, /^[A-Za-z0-9_-]{22}$/);
    const t2 = cache.insert("b");
    assert.throws(() => cache.insert("c"), ResourceExhaustedError);
    assert.equal(cache.consume(t1), "a");
    assert.equal(cache.consume(t1), undefined);
    now = 1000;
    assert.equal(cache.consume(t2), undefined, "expired");
    cache.insert("d"); // room again once expired entries are pruned
    assert.equal(cache.size, 1);
  });

  test("invalid requests are refused when the URL is made", () => {
    const base = { containerId: "c", cmd: ["sh"], tty: true, stdin: true, stdout: true, stderr: true };
    assert.throws(() => server.getExecUrl(base), InvalidArgumentError);
    assert.throws(
      () => server.getExecUrl({ ...base, tty: false, stdin: false, stdout: false, stderr: false }),
      InvalidArgumentError,
    );
    assert.throws(() => server.getExecUrl({ ...base, containerId: "" }), InvalidArgumentError);
    assert.throws(() => server.getPortForwardUrl({ podSandboxId: "", ports: [] }), InvalidArgumentError);
  });

  test("a client that disconnects mid-stream leaves nothing running", async () => {
    const cmd = ["sh", "-c", "while :; do echo tick; sleep 0.02; done"];
    const s = await SpdyCommandSession.open(exec(cmd), V4, { stdout: true, stderr: true });
    await watch(s.stdout).until(/tick/);
    const pid = backend.pids[backend.pids.length - 1];
    assert.ok(alive(pid));
    s.conn.destroy();
    await eventually(
      () => !alive(pid) && backend.running.size === 0 && server.activeSessions === 0,
      "cleanup after SPDY disconnect",
    );

    const { client } = await wsOpen(exec(cmd, { stdin: true }), ["v5.channel.k8s.io"]);
    const c = client as ChannelClient;
    await c.waitFor(() => /tick/.test(c.output(1).toString()));
    const wsPid = backend.pids[backend.pids.length - 1];
    c.ws.terminate();
    await eventually(
      () => !alive(wsPid) && backend.running.size === 0 && server.activeSessions === 0,
      "cleanup after WebSocket disconnect",
    );
  });

  test("a client that stops reading holds the command back instead of buffering its output", async () => {
    const size = 16 * 1024 * 1024;
    const s = await SpdyCommandSession.open(exec(["head", "-c", String(size), "/dev/zero"]), V4, {
      stdout: true,
      stderr: true,
    });
    const pid = backend.pids[backend.pids.length - 1];
    s.stdout?.pause();
    await delay(1000);
    // head would finish in milliseconds; it is still blocked writing, held by the flow control.
    assert.ok(alive(pid), "the command waits for the client");
    let received = 0;
    s.stdout?.on("data", (c: Buffer) => (received += c.length));
    s.stdout?.resume();
    const r = await s.result();
    await s.close();
    assert.equal(received, size);
    assert.equal(exitCodeOf(r.error), 0);
  });

  test("a SPDY client that never opens its streams is dropped after the creation timeout", async () => {
    const ran = backend.pids.length;
    const up = await spdyUpgrade(exec(["true"]), V4);
    const conn = up.conn as SpdyConnection;
    await conn.createStream({ streamtype: "error" });
    await new Promise<void>((resolve) => conn.once("close", resolve));
    assert.equal(backend.pids.length, ran, "the command never ran");
  });

  test("serves over TLS", async () => {
    const key = join(tmp, "key.pem");
    const cert = join(tmp, "cert.pem");
    execFileSync(
      "openssl",
      [
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        key,
        "-out",
        cert,
        "-days",
        "1",
        "-subj",
        "/CN=127.0.0.1",
      ],
      {
        stdio: "ignore",
      },
    );
    const tls = new StreamingServer({ backend, tls: { cert: readFileSync(cert), key: readFileSync(key) } });
    const tlsBase = await tls.start();
    try {
      assert.match(tlsBase, /^https:\/\/127\.0\.0\.1:\d+$/);
      const req = { containerId: "c", cmd: ["echo", "secure"], tty: false, stdin: false, stdout: true, stderr: true };
      const s = await SpdyCommandSession.open(tls.getExecUrl(req), V4, { stdout: true, stderr: true });
      assert.equal((await s.result()).stdout.toString(), "secure\n");
      await s.close();
      const { client } = await wsOpen(tls.getExecUrl(req), ["v5.channel.k8s.io"]);
      const c = client as ChannelClient;
      await c.closed;
      assert.equal(c.output(1).toString(), "secure\n");
    } finally {
      await tls.stop();
    }
  });
});
