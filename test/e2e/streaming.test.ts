// The streaming server end to end: real processes behind a host backend, clients speaking
// SPDY/3.1 and WebSocket as kubectl/crictl do (test/helpers/spdy-client.ts, ws-client.ts).
// This file: the server itself and exec over SPDY and WebSocket.
import assert from "node:assert/strict";
import net from "node:net";
import { networkInterfaces } from "node:os";
import { describe, test } from "node:test";
import { SpdyCommandSession, exitCodeOf, spdyUpgrade } from "../helpers/spdy-client.js";
import { ChannelClient, wsOpen } from "../helpers/ws-client.js";
import { V4, base, bigFile, bigHash, exec, sha256, useStreamingServer, watch } from "../helpers/streaming-fixtures.js";

describe("streaming server", () => {
  useStreamingServer();

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
});
