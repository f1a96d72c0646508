// The streaming server end to end: real processes behind a host backend, clients speaking
// SPDY/3.1 and WebSocket as kubectl/crictl do (test/helpers/spdy-client.ts, ws-client.ts).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { networkInterfaces, tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { createWebSocketStream } from "ws";
import { StreamingServer } from "../src/streaming/server.js";
import { SpdyConnection, type SpdyStream } from "../src/streaming/spdy/connection.js";
import { RequestCache } from "../src/streaming/tokens.js";
import { InvalidArgumentError, ResourceExhaustedError } from "../src/util/errors.js";
import { HostBackend } from "./helpers/streaming-host-backend.js";
import { SpdyCommandSession, exitCodeOf, forwardOnce, spdyUpgrade } from "./helpers/spdy-client.js";
import { ChannelClient, wsOpen, wsOpenRaw } from "./helpers/ws-client.js";

const V4 = ["v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"];
const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");
const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function eventually(cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await delay(20);
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Accumulates a stream's output and lets the test wait for some of it. */
function watch(s: SpdyStream | undefined): { text: () => string; until: (re: RegExp) => Promise<void> } {
  const chunks: Buffer[] = [];
  s?.on("data", (c: Buffer) => chunks.push(c));
  const text = () => Buffer.concat(chunks).toString();
  return { text, until: (re) => eventually(() => re.test(text()), `output matching ${re}`) };
}

/** A little HTTP server standing in for a process listening inside the pod. */
async function startTarget(body: string): Promise<{ port: number; close: () => Promise<void> }> {
  const srv = http.createServer((req, res) => {
    let got = "";
    req.on("data", (c: Buffer) => (got += c.toString()));
    req.on("end", () => res.end(`${body} ${req.method} ${req.url} ${got}`));
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  return {
    port: (srv.address() as net.AddressInfo).port,
    close: () => new Promise((r) => srv.close(() => r())),
  };
}

const httpRequest = (path: string) =>
  Buffer.from(`POST ${path} HTTP/1.1\r\nHost: pod\r\nConnection: close\r\nContent-Length: 4\r\n\r\nping`);

describe("streaming server", () => {
  let backend: HostBackend;
  let server: StreamingServer;
  let base: string;
  let tmp: string;
  let bigFile: string;
  let bigHash: string;
  const exec = (cmd: string[], o: Partial<{ tty: boolean; stdin: boolean; stdout: boolean; stderr: boolean }> = {}) =>
    server.getExecUrl({ containerId: "c1", cmd, tty: false, stdin: false, stdout: true, stderr: true, ...o });

  before(async () => {
    tmp = mkdtempSync(join(tmpdir(), "berth-streaming-"));
    const big = randomBytes(10 * 1024 * 1024);
    bigFile = join(tmp, "big");
    writeFileSync(bigFile, big);
    bigHash = sha256(big);
    backend = new HostBackend();
    server = new StreamingServer({ backend, streamCreationTimeoutMs: 2000 });
    base = await server.start();
  });

  after(async () => {
    await server.stop();
    for (const c of backend.containers.values()) c.kill("SIGKILL");
    // A failed test may leave a command behind; each runs in its own process group.
    for (const c of backend.running) if (c.pid) process.kill(-c.pid, "SIGKILL");
    rmSync(tmp, { recursive: true, force: true });
  });

  test("serves on loopback only, with an ephemeral port", async () => {
    const u = new URL(base);
    assert.equal(u.hostname, "127.0.0.1");
    assert.ok(Number(u.port) > 0);
    const external = Object.values(networkInterfaces())
      .flat()
      .find((a) => a && a.family === "IPv4" && !a.internal);
    if (!external) return; // no other address to try on this machine
    await assert.rejects(
      new Promise((resolve, reject) => {
        const s = net.connect(Number(u.port), external.address, () => resolve(s.destroy()));
        s.on("error", reject);
      }),
      /ECONNREFUSED/,
    );
  });

  test("SPDY exec without tty: separate stdout and stderr, exit code in the v4 Status", async () => {
    const url = exec(["sh", "-c", "echo out; echo err >&2; exit 3"]);
    const s = await SpdyCommandSession.open(url, V4, { stdout: true, stderr: true });
    assert.equal(s.protocol, "v4.channel.k8s.io");
    const r = await s.result();
    await s.close();
    assert.equal(r.stdout.toString(), "out\n");
    assert.equal(r.stderr.toString(), "err\n");
    assert.deepEqual(JSON.parse(r.error.toString()), {
      metadata: {},
      status: "Failure",
      message:
        "command terminated with non-zero exit code: error executing command [sh -c echo out; echo err >&2; exit 3], exit code 3",
      reason: "NonZeroExitCode",
      details: { causes: [{ reason: "ExitCode", message: "3" }] },
    });
    assert.equal(exitCodeOf(r.error), 3);
  });

  test("SPDY exec success reports a Success Status", async () => {
    const s = await SpdyCommandSession.open(exec(["true"]), V4, { stdout: true, stderr: true });
    const r = await s.result();
    await s.close();
    assert.equal(r.error.toString(), '{"metadata":{},"status":"Success"}');
  });

  test("SPDY negotiation picks the client's most preferred protocol the server speaks", async () => {
    const v5 = await SpdyCommandSession.open(exec(["true"], { stderr: false }), ["v5.channel.k8s.io", ...V4], {
      stdout: true,
    });
    assert.equal(v5.protocol, "v5.channel.k8s.io");
    assert.equal(exitCodeOf((await v5.result()).error), 0);
    await v5.close();

    // v2/v3 report a failure as plain text and success as nothing.
    const v3cmd = exec(["sh", "-c", "exit 4"], { stderr: false });
    const v3 = await SpdyCommandSession.open(v3cmd, ["v3.channel.k8s.io", "v2.channel.k8s.io"], {
      stdout: true,
    });
    assert.equal(v3.protocol, "v3.channel.k8s.io");
    assert.match((await v3.result()).error.toString(), /^command terminated with non-zero exit code: .*exit code 4$/);
    await v3.close();

    const refused = await spdyUpgrade(exec(["true"]), ["v9.channel.k8s.io"]);
    assert.equal(refused.status, 403);
    assert.equal(
      refused.headers["x-accepted-stream-protocol-versions"],
      "v5.channel.k8s.io, v4.channel.k8s.io, v3.channel.k8s.io, v2.channel.k8s.io, channel.k8s.io",
    );
  });

  test("SPDY exec with a tty runs an interactive shell, applies resizes and returns the last exit code", async () => {
    const s = await SpdyCommandSession.open(exec(["sh"], { tty: true, stdin: true, stderr: false }), V4, {
      stdin: true,
      stdout: true,
      tty: true,
    });
    assert.ok(s.resize, "a v4 tty session has a resize stream");
    const out = watch(s.stdout);
    const done = s.result();
    s.sendResize(100, 40);
    s.stdin?.write('while [ "$(stty size)" != "40 100" ]; do sleep 0.05; done; echo "size=$(stty size)"\n');
    await out.until(/size=40 100/);
    s.sendResize(132, 50);
    s.stdin?.write('while [ "$(stty size)" != "50 132" ]; do sleep 0.05; done; echo "size=$(stty size)"\n');
    await out.until(/size=50 132/);
    s.stdin?.write("(exit 5)\nexit\n");
    const r = await done;
    await s.close();
    assert.equal(r.stderr.length, 0);
    assert.equal(exitCodeOf(r.error), 5);
  });

  test("10 MB of output arrives intact over SPDY and over WebSocket", async () => {
    const s = await SpdyCommandSession.open(exec(["cat", bigFile]), V4, { stdout: true, stderr: true });
    const r = await s.result();
    await s.close();
    assert.equal(r.stdout.length, 10 * 1024 * 1024);
    assert.equal(sha256(r.stdout), bigHash);
    assert.equal(exitCodeOf(r.error), 0);

    const { client } = await wsOpen(exec(["cat", bigFile]), ["v5.channel.k8s.io"]);
    assert.ok(client);
    const c = client;
    await c.closed;
    assert.equal(sha256(c.output(1)), bigHash);
    assert.equal(c.output(3).toString(), '{"metadata":{},"status":"Success"}');
  });

  test("closing stdin ends cat (SPDY FIN, and the v5 WebSocket close signal)", async () => {
    const s = await SpdyCommandSession.open(exec(["cat"], { stdin: true }), V4, {
      stdin: true,
      stdout: true,
      stderr: true,
    });
    s.stdin?.end("hello\nworld\n");
    const r = await s.result();
    await s.close();
    assert.equal(r.stdout.toString(), "hello\nworld\n");
    assert.equal(exitCodeOf(r.error), 0);

    const { client, protocol } = await wsOpen(exec(["cat"], { stdin: true }), [
      "v5.channel.k8s.io",
      "v4.channel.k8s.io",
    ]);
    assert.ok(client);
    assert.equal(protocol, "v5.channel.k8s.io");
    const c = client;
    c.send(0, "over websocket\n");
    await c.waitFor(() => c.output(1).toString() === "over websocket\n");
    c.closeChannel(0);
    const { code } = await c.closed;
    assert.equal(code, 1000);
    assert.equal(c.output(3).toString(), '{"metadata":{},"status":"Success"}');
    // The first message told the client the session is up: an empty one on stdout.
    assert.deepEqual(c.messages[0], { channel: 1, data: Buffer.alloc(0) });
  });

  test("WebSocket exec: v4 and base64 variants, exit codes, stderr, protocol choice", async () => {
    const cmd = ["sh", "-c", "echo out; echo err >&2; exit 2"];
    const v4 = await wsOpen(exec(cmd), ["v4.channel.k8s.io", "channel.k8s.io"]);
    assert.equal(v4.protocol, "v4.channel.k8s.io");
    const c = v4.client as ChannelClient;
    await c.closed;
    assert.equal(c.output(1).toString(), "out\n");
    assert.equal(c.output(2).toString(), "err\n");
    assert.equal(exitCodeOf(c.output(3)), 2);

    const b64 = await wsOpen(exec(cmd), ["v4.base64.channel.k8s.io"]);
    assert.equal(b64.protocol, "v4.base64.channel.k8s.io");
    const cb = b64.client as ChannelClient;
    await cb.closed;
    assert.equal(cb.output(1).toString(), "out\n");
    assert.equal(exitCodeOf(cb.output(3)), 2);

    // The unversioned protocol reports failures as text.
    const v1 = await wsOpen(exec(cmd), ["channel.k8s.io"]);
    const c1 = v1.client as ChannelClient;
    await c1.closed;
    assert.match(c1.output(3).toString(), /^command terminated with non-zero exit code/);

    assert.equal((await wsOpen(exec(cmd), ["v9.channel.k8s.io"])).status, 403);
  });

  test("WebSocket exec with a tty delivers resizes on channel 4", async () => {
    const { client } = await wsOpen(exec(["sh"], { tty: true, stdin: true, stderr: false }), ["v5.channel.k8s.io"]);
    const c = client as ChannelClient;
    c.send(4, JSON.stringify({ Width: 90, Height: 30 }));
    c.send(0, 'while [ "$(stty size)" != "30 90" ]; do sleep 0.05; done; echo "size=$(stty size)"\n');
    await c.waitFor(() => /size=30 90/.test(c.output(1).toString()));
    c.send(0, "exit 6\n");
    await c.closed;
    assert.equal(exitCodeOf(c.output(3)), 6);
  });

  test("attach sees a running container's output and writes to its stdin", async () => {
    backend.startContainer("ctr1", [
      "sh",
      "-c",
      'while read l; do echo "got:$l"; echo "err:$l" >&2; [ "$l" = quit ] && exit 0; done',
    ]);
    const url = server.getAttachUrl({ containerId: "ctr1", tty: false, stdin: true, stdout: true, stderr: true });
    const s = await SpdyCommandSession.open(url, V4, { stdin: true, stdout: true, stderr: true });
    const out = watch(s.stdout);
    const done = s.result();
    s.stdin?.write("hello\n");
    await out.until(/got:hello/);

    // A second client attaches over WebSocket and sees the same container.
    const wsUrl = server.getAttachUrl({ containerId: "ctr1", tty: false, stdin: true, stdout: true, stderr: false });
    const { client } = await wsOpen(wsUrl, ["v5.channel.k8s.io"]);
    const c = client as ChannelClient;
    c.send(0, "from-ws\n");
    await c.waitFor(() => /got:from-ws/.test(c.output(1).toString()));
    await out.until(/got:from-ws/);

    s.stdin?.write("quit\n");
    const r = await done;
    await s.close();
    await c.closed;
    assert.match(r.stderr.toString(), /err:hello/);
    assert.equal(r.error.toString(), '{"metadata":{},"status":"Success"}');
    assert.equal(c.output(3).toString(), '{"metadata":{},"status":"Success"}');
  });

  test("port forwarding over SPDY carries full HTTP exchanges to two ports at once", async () => {
    const a = await startTarget("A");
    const b = await startTarget("B");
    try {
      const url = server.getPortForwardUrl({ podSandboxId: "pod1", ports: [a.port, b.port] });
      const up = await spdyUpgrade(url, ["portforward.k8s.io"]);
      assert.equal(up.protocol, "portforward.k8s.io");
      const conn = up.conn as SpdyConnection;
      const [ra, rb, ra2] = await Promise.all([
        forwardOnce(conn, a.port, "1", httpRequest("/one")),
        forwardOnce(conn, b.port, "2", httpRequest("/two")),
        forwardOnce(conn, a.port, "3", httpRequest("/three")),
      ]);
      assert.match(ra.data.toString(), /^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\nA POST \/one ping$/);
      assert.match(rb.data.toString(), /^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\nB POST \/two ping$/);
      assert.match(ra2.data.toString(), /A POST \/three ping$/);
      assert.equal(ra.error.length, 0);

      // Nothing listens on b's port once it is closed: the error stream says so.
      await b.close();
      const failed = await forwardOnce(conn, b.port, "4", httpRequest("/x"));
      const err = JSON.parse(failed.error.toString()) as { closeConnection: boolean; message: string };
      assert.match(err.message, new RegExp(`^error forwarding port ${b.port} to pod pod1, uid : .*ECONNREFUSED`));
      await conn.close();
      await eventually(() => server.activeSessions === 0 && backend.forwards.size === 0, "the session to end");
    } finally {
      await a.close();
      await b.close().catch(() => undefined);
    }
  });

  test("port forwarding over WebSocket: channels per port, port prefix, and the SPDY tunnel", async () => {
    const a = await startTarget("A");
    const b = await startTarget("B");
    try {
      const url = server.getPortForwardUrl({ podSandboxId: "pod1", ports: [a.port, b.port] });
      const { client, protocol } = await wsOpen(url, ["v4.channel.k8s.io"]);
      assert.equal(protocol, "v4.channel.k8s.io");
      const c = client as ChannelClient;
      await c.waitFor(() => [0, 1, 2, 3].every((ch) => c.chunks.has(ch)));
      const le = (p: number) => Buffer.from([p & 0xff, p >> 8]);
      for (const [ch, port] of [
        [0, a.port],
        [1, a.port],
        [2, b.port],
        [3, b.port],
      ]) {
        assert.deepEqual(c.chunks.get(ch)?.[0], le(port), `channel ${ch} starts with its port`);
      }
      c.send(0, httpRequest("/ws-a"));
      c.send(2, httpRequest("/ws-b"));
      await c.closed;
      assert.match(c.output(0).subarray(2).toString(), /^HTTP\/1\.1 200 OK[\s\S]*A POST \/ws-a ping$/);
      assert.match(c.output(2).subarray(2).toString(), /^HTTP\/1\.1 200 OK[\s\S]*B POST \/ws-b ping$/);

      // kubectl's WebSocket port-forward tunnels the SPDY protocol through binary messages.
      const tunnelUrl = server.getPortForwardUrl({ podSandboxId: "pod1", ports: [a.port] });
      const t = await wsOpenRaw(tunnelUrl, "SPDY/3.1+portforward.k8s.io");
      assert.equal(t.protocol, "SPDY/3.1+portforward.k8s.io");
      const conn = new SpdyConnection(createWebSocketStream(t.ws), { server: false });
      const r = await forwardOnce(conn, a.port, "1", httpRequest("/tunnel"));
      assert.match(r.data.toString(), /A POST \/tunnel ping$/);
      conn.destroy();
      await eventually(() => server.activeSessions === 0 && backend.forwards.size === 0, "the sessions to end");
    } finally {
      await a.close();
      await b.close();
    }
  });

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
