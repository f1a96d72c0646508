// The streaming server end to end: attach and port forwarding over SPDY and WebSocket.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { createWebSocketStream } from "ws";
import { SpdyConnection } from "../../src/streaming/spdy/connection.js";
import { SpdyCommandSession, forwardOnce, spdyUpgrade } from "../helpers/spdy-client.js";
import { ChannelClient, wsOpen, wsOpenRaw } from "../helpers/ws-client.js";
import {
  V4,
  backend,
  eventually,
  httpRequest,
  server,
  startTarget,
  useStreamingServer,
  watch,
} from "../helpers/streaming-fixtures.js";

describe("streaming server", () => {
  useStreamingServer();

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
});
