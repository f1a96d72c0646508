// CRI Exec, Attach and PortForward end to end: a private berthd with real pods and containers
// (runc, CNI, busybox from a real registry), the URLs the CRI calls return, and clients speaking
// SPDY/3.1 and WebSocket as kubectl and crictl do (test/helpers/spdy-client.ts, ws-client.ts).
// This file: exec, attach and port forwarding.
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { describe, test } from "node:test";
import { ContainerState } from "../../src/gen/cri/runtime/v1/api.js";
import type { SpdyConnection } from "../../src/streaming/spdy/connection.js";
import { sleep, until } from "../helpers/cri.js";
import { SpdyCommandSession, exitCodeOf, forwardOnce, spdyUpgrade } from "../helpers/spdy-client.js";
import { type ChannelClient, wsOpen } from "../helpers/ws-client.js";
import {
  BIG,
  V4,
  V5,
  box,
  env,
  execUrl,
  freePort,
  httpGet,
  pod,
  ps,
  watch,
  web,
  useCriStreamingEnv,
} from "../helpers/cri-streaming-env.js";

useCriStreamingEnv();

describe("CRI streaming", () => {
  test("Exec returns a single-use URL on the loopback streaming server", async () => {
    const url = new URL(await execUrl(box, ["true"]));
    assert.equal(url.protocol, "http:");
    assert.equal(url.hostname, "127.0.0.1");
    assert.match(url.pathname, /^\/exec\/[A-Za-z0-9_-]{22}$/);
  });

  test("exec with a tty and stdin runs an interactive shell, resizes, returns the last exit code (SPDY)", async () => {
    const s = await SpdyCommandSession.open(await execUrl(box, ["sh"], { tty: true, stdin: true, stderr: false }), V4, {
      stdin: true,
      stdout: true,
      tty: true,
    });
    assert.equal(s.protocol, "v4.channel.k8s.io");
    const out = watch(s.stdout);
    const done = s.result();
    s.sendResize(100, 40);
    s.stdin?.write('while [ "$(stty size)" != "40 100" ]; do sleep 0.05; done; echo "size=$(stty size) term=$TERM"\n');
    await out.until(/size=40 100 term=xterm/);
    s.sendResize(132, 50);
    s.stdin?.write('while [ "$(stty size)" != "50 132" ]; do sleep 0.05; done; echo "size=$(stty size)"\n');
    await out.until(/size=50 132/);
    // A terminal: the shell sees a tty on stdin, and stderr arrives merged on stdout.
    s.stdin?.write("[ -t 0 ] && echo is-a-tty; echo to-stderr >&2\n");
    await out.until(/is-a-tty[\s\S]*to-stderr/);
    s.stdin?.write("(exit 5)\nexit\n");
    const r = await done;
    await s.close();
    assert.equal(exitCodeOf(r.error), 5);
  });

  test("exec with a tty over WebSocket: resize on channel 4, exit code in the Status", async () => {
    const { client, protocol } = await wsOpen(
      await execUrl(box, ["sh"], { tty: true, stdin: true, stderr: false }),
      V5,
    );
    assert.equal(protocol, "v5.channel.k8s.io");
    const c = client as ChannelClient;
    c.send(4, JSON.stringify({ Width: 90, Height: 30 }));
    c.send(0, 'while [ "$(stty size)" != "30 90" ]; do sleep 0.05; done; echo "size=$(stty size)"\n');
    await c.waitFor(() => /size=30 90/.test(c.output(1).toString()));
    c.send(0, "exit 6\n");
    await c.closed;
    assert.equal(exitCodeOf(c.output(3)), 6);
  });

  test("exec without a tty keeps stdout and stderr apart and reports the exit code (SPDY and WebSocket)", async () => {
    const cmd = ["sh", "-c", "echo out; echo err >&2; exit 3"];
    const s = await SpdyCommandSession.open(await execUrl(box, cmd), V4, { stdout: true, stderr: true });
    const r = await s.result();
    await s.close();
    assert.equal(r.stdout.toString(), "out\n");
    assert.equal(r.stderr.toString(), "err\n");
    assert.equal(exitCodeOf(r.error), 3);
    assert.match(JSON.parse(r.error.toString()).message, /exit code 3$/);

    const { client } = await wsOpen(await execUrl(box, cmd), ["v4.channel.k8s.io"]);
    const c = client as ChannelClient;
    await c.closed;
    assert.equal(c.output(1).toString(), "out\n");
    assert.equal(c.output(2).toString(), "err\n");
    assert.equal(exitCodeOf(c.output(3)), 3);

    // The exec runs as the container's process does: its working directory and environment.
    const env1 = await SpdyCommandSession.open(await execUrl(box, ["sh", "-c", 'echo "$PWD $PATH"']), V4, {
      stdout: true,
      stderr: true,
    });
    const e = await env1.result();
    await env1.close();
    assert.equal(e.stdout.toString(), "/ /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n");
  });

  test("10 MB of output arrives intact over SPDY and over WebSocket", async () => {
    const made = await env.d.rt.execSync({
      containerId: box,
      cmd: ["sh", "-c", `head -c ${BIG} /dev/urandom > /tmp/big && sha256sum /tmp/big`],
      timeout: 60n,
    });
    assert.equal(made.exitCode, 0, made.stderr.toString());
    const hash = made.stdout.toString().split(" ")[0];
    const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

    const s = await SpdyCommandSession.open(await execUrl(box, ["cat", "/tmp/big"]), V4, {
      stdout: true,
      stderr: true,
    });
    const r = await s.result();
    await s.close();
    assert.equal(r.stdout.length, BIG);
    assert.equal(sha(r.stdout), hash);
    assert.equal(exitCodeOf(r.error), 0);

    const { client } = await wsOpen(await execUrl(box, ["cat", "/tmp/big"]), V5);
    const c = client as ChannelClient;
    await c.closed;
    assert.equal(c.output(1).length, BIG);
    assert.equal(sha(c.output(1)), hash);
    assert.equal(exitCodeOf(c.output(3)), 0);
  });

  test("closing stdin ends cat (SPDY half-close, and the v5 WebSocket close signal)", async () => {
    const s = await SpdyCommandSession.open(await execUrl(box, ["cat"], { stdin: true }), V4, {
      stdin: true,
      stdout: true,
      stderr: true,
    });
    s.stdin?.end("hello\nworld\n");
    const r = await s.result();
    await s.close();
    assert.equal(r.stdout.toString(), "hello\nworld\n");
    assert.equal(exitCodeOf(r.error), 0);

    const { client, protocol } = await wsOpen(await execUrl(box, ["cat"], { stdin: true }), V5);
    assert.equal(protocol, "v5.channel.k8s.io");
    const c = client as ChannelClient;
    c.send(0, "over websocket\n");
    await c.waitFor(() => c.output(1).toString() === "over websocket\n");
    c.closeChannel(0);
    await c.closed;
    assert.equal(exitCodeOf(c.output(3)), 0);
  });

  test("attach sees a running container's output and writes to its stdin; stdin_once closes it", async () => {
    const script = 'echo ready; while read l; do echo "got:$l"; echo "err:$l" >&2; done; echo bye';
    const cid = await env.runContainer(pod, "chat", ["sh", "-c", script], { stdin: true, stdinOnce: true });
    const url = (await env.d.rt.attach({ containerId: cid, stdin: true, stdout: true, stderr: true })).url;
    assert.match(new URL(url).pathname, /^\/attach\//);
    const s = await SpdyCommandSession.open(url, V4, { stdin: true, stdout: true, stderr: true });
    const out = watch(s.stdout);
    const err = watch(s.stderr);
    const done = s.result();
    s.stdin?.write("hello\n");
    await out.until(/got:hello/);
    await err.until(/err:hello/);

    // A second client, over WebSocket and without stdin, sees the same live output.
    const wsUrl = (await env.d.rt.attach({ containerId: cid, stdin: false, stdout: true, stderr: false })).url;
    const { client } = await wsOpen(wsUrl, V5);
    const c = client as ChannelClient;
    // It sees output from the moment its session is attached on the server: keep talking until then.
    const ticker = setInterval(() => s.stdin?.write("second\n"), 100);
    await c.waitFor(() => /got:second/.test(c.output(1).toString())).finally(() => clearInterval(ticker));
    assert.doesNotMatch(c.output(1).toString(), /err:/);

    // The output also went to the container's log, undisturbed.
    const logPath = join(env.logDir, "streams", "chat.log");
    await until(() => existsSync(logPath), "the log file");

    // stdin_once: the attach closing stdin closes the container's stdin; the loop ends.
    s.stdin?.end();
    await out.until(/bye/);
    const r = await done;
    await s.close();
    await c.closed;
    assert.equal(r.error.toString(), '{"metadata":{},"status":"Success"}');
    assert.equal(c.output(3).toString(), '{"metadata":{},"status":"Success"}');
    const st = await until(async () => {
      const x = (await env.d.rt.containerStatus({ containerId: cid })).status;
      return x?.state === ContainerState.CONTAINER_EXITED ? x : undefined;
    }, "the container to exit");
    assert.equal(st.exitCode, 0);
    const log = readFileSync(logPath, "utf8");
    assert.match(log, / stdout F got:hello\n/);
    assert.match(log, / stderr F err:second\n/);
    assert.match(log, / stdout F bye\n/);
  });

  test("an attach client that stops reading never holds back the container or its log", async () => {
    const lines = 30_000;
    const pad = "x".repeat(60);
    const script = `read go; i=0; while [ $i -lt ${lines} ]; do echo "line-$i-${pad}"; i=$((i+1)); done; echo all-written; sleep 100000`;
    const cid = await env.runContainer(pod, "chatty", ["sh", "-c", script], { stdin: true });
    const url = (await env.d.rt.attach({ containerId: cid, stdin: true, stdout: true, stderr: true })).url;
    const s = await SpdyCommandSession.open(url, V4, { stdin: true, stdout: true, stderr: true });
    s.stdout?.pause();
    // Attached once the server forwards stdin (the container only starts talking after "go").
    const logPath = join(env.logDir, "streams", "chatty.log");
    const ticker = setInterval(() => s.stdin?.write("go\n"), 200);
    try {
      await until(
        () => existsSync(logPath) && readFileSync(logPath, "utf8").includes("all-written"),
        "the whole output in the log",
        60_000,
      );
    } finally {
      clearInterval(ticker);
    }
    // ~2.3 MB went out while the client read nothing: the log has every line, in order.
    const logged = readFileSync(logPath, "utf8")
      .split("\n")
      .filter((l) => l.includes(" stdout F line-"));
    assert.equal(logged.length, lines);
    assert.match(logged[lines - 1], new RegExp(`line-${lines - 1}-`));
    const got: Buffer[] = [];
    s.stdout?.on("data", (c: Buffer) => got.push(c));
    s.stdout?.resume();
    await until(() => Buffer.concat(got).toString().startsWith("line-"), "the buffered output");
    // What the client had not taken beyond a bounded buffer was dropped for it, not queued.
    let size = -1;
    await until(async () => {
      const before = size;
      await sleep(500);
      size = Buffer.concat(got).length;
      return size === before;
    }, "the client to have everything the server kept");
    const full = logged.reduce((n, l) => n + l.length - l.indexOf("line-") + 1, 0);
    assert.ok(size < full, `the client got ${size} of ${full} bytes: some must have been dropped`);
    s.conn.destroy();
    await env.d.rt.stopContainer({ containerId: cid, timeout: 0n });
  });

  test("attach to a container with a tty: one output stream, input echoed, resize", async () => {
    const cid = await env.runContainer(pod, "term", ["sh"], { stdin: true, tty: true });
    const url = (await env.d.rt.attach({ containerId: cid, stdin: true, tty: true, stdout: true, stderr: false })).url;
    const s = await SpdyCommandSession.open(url, V4, { stdin: true, stdout: true, tty: true });
    const out = watch(s.stdout);
    const done = s.result();
    s.sendResize(77, 33);
    s.stdin?.write('while [ "$(stty size)" != "33 77" ]; do sleep 0.05; done; echo "tty-size=$(stty size)"\n');
    await out.until(/tty-size=33 77/);
    s.stdin?.write("exit 4\n");
    const r = await done;
    await s.close();
    assert.equal(r.error.toString(), '{"metadata":{},"status":"Success"}');
    const st = await until(async () => {
      const x = (await env.d.rt.containerStatus({ containerId: cid })).status;
      return x?.state === ContainerState.CONTAINER_EXITED ? x : undefined;
    }, "the container to exit");
    assert.equal(st.exitCode, 4);
  });

  test("port forwarding carries full HTTP exchanges to httpd in the pod (SPDY and WebSocket)", async () => {
    await until(async () => /httpd/.test(await ps(web)), "httpd to run");
    const url = (await env.d.rt.portForward({ podSandboxId: pod.id, port: [8080] })).url;
    assert.match(new URL(url).pathname, /^\/portforward\//);
    const up = await spdyUpgrade(url, ["portforward.k8s.io"]);
    assert.equal(up.protocol, "portforward.k8s.io");
    const conn = up.conn as SpdyConnection;
    const [a, b] = await Promise.all([
      forwardOnce(conn, 8080, "1", httpGet("/index.html")),
      forwardOnce(conn, 8080, "2", httpGet("/")),
    ]);
    assert.match(a.data.toString(), /^HTTP\/1\.[01] 200 OK\r\n[\s\S]*\r\n\r\nhello from berth\n$/);
    assert.match(b.data.toString(), /hello from berth\n$/);
    assert.equal(a.error.length, 0);

    // Nothing listens on 8081 in the pod: the error stream says so, the session lives on.
    const failed = await forwardOnce(conn, 8081, "3", httpGet("/"));
    const perr = JSON.parse(failed.error.toString()) as { message: string };
    assert.match(perr.message, new RegExp(`^error forwarding port 8081 to pod ${pod.id}, uid : .*ECONNREFUSED`));
    const again = await forwardOnce(conn, 8080, "4", httpGet("/index.html"));
    assert.match(again.data.toString(), /hello from berth\n$/);
    await conn.close();

    const ws = await wsOpen((await env.d.rt.portForward({ podSandboxId: pod.id, port: [8080] })).url, [
      "v4.channel.k8s.io",
    ]);
    const c = ws.client as ChannelClient;
    await c.waitFor(() => c.chunks.has(0) && c.chunks.has(1));
    c.send(0, httpGet("/index.html"));
    await c.closed;
    assert.match(c.output(0).subarray(2).toString(), /^HTTP\/1\.[01] 200 OK[\s\S]*hello from berth\n$/);
  });

  test("port forwarding reaches a host-network pod", async () => {
    const port = await freePort();
    const hostNet = { linux: { securityContext: { namespaceOptions: { network: 2, pid: 0, ipc: 0 } } } };
    const hp = await env.runPod("streams-host", hostNet);
    try {
      const cid = await env.runContainer(hp, "web", ["httpd", "-f", "-p", `127.0.0.1:${port}`, "-h", "/www"], hostNet);
      await until(async () => /httpd/.test(await ps(cid)), "httpd to run");
      const url = (await env.d.rt.portForward({ podSandboxId: hp.id, port: [port] })).url;
      const up = await spdyUpgrade(url, ["portforward.k8s.io"]);
      const conn = up.conn as SpdyConnection;
      const r = await until(async () => {
        const x = await forwardOnce(conn, port, String(Date.now()), httpGet("/index.html"));
        return x.data.length > 0 ? x : undefined;
      }, "httpd to answer");
      assert.match(r.data.toString(), /^HTTP\/1\.[01] 200 OK[\s\S]*hello from berth\n$/);
      await conn.close();
    } finally {
      await env.d.rt.stopPodSandbox({ podSandboxId: hp.id });
      await env.d.rt.removePodSandbox({ podSandboxId: hp.id });
    }
  });
});
