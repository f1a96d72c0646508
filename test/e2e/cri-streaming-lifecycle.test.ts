// CRI streaming end to end, past the happy path: through containerd's runc shim, bad and expired
// tokens, requests the CRI refuses, clients that disconnect mid-stream, and a berthd restart.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { status as grpcStatus } from "@grpc/grpc-js";
import { ContainerState } from "../../src/gen/cri/runtime/v1/api.js";
import { sleep, until } from "../helpers/cri.js";
import { SpdyCommandSession, exitCodeOf, spdyUpgrade } from "../helpers/spdy-client.js";
import { type ChannelClient, wsOpen } from "../helpers/ws-client.js";
import {
  TOKEN_TTL_MS,
  V4,
  V5,
  box,
  code,
  env,
  execUrl,
  pod,
  ps,
  streamFiles,
  watch,
  useCriStreamingEnv,
} from "../helpers/cri-streaming-env.js";

useCriStreamingEnv();

describe("CRI streaming", () => {
  test("exec and attach work the same through containerd's runc shim", async () => {
    const rp = await env.runPod("streams-runc-v2", {}, "runc-v2");
    try {
      const cid = await env.runContainer(rp, "chat", ["sh", "-c", 'while read l; do echo "got:$l"; done; echo bye'], {
        stdin: true,
        stdinOnce: true,
      });
      const s = await SpdyCommandSession.open(
        await execUrl(cid, ["sh", "-c", "cat; echo err >&2; exit 7"], { stdin: true }),
        V4,
        {
          stdin: true,
          stdout: true,
          stderr: true,
        },
      );
      s.stdin?.end("via runc-v2\n");
      const r = await s.result();
      await s.close();
      assert.equal(r.stdout.toString(), "via runc-v2\n");
      assert.equal(r.stderr.toString(), "err\n");
      assert.equal(exitCodeOf(r.error), 7);

      const t = await SpdyCommandSession.open(
        await execUrl(cid, ["sh"], { tty: true, stdin: true, stderr: false }),
        V4,
        { stdin: true, stdout: true, tty: true },
      );
      const tout = watch(t.stdout);
      const tdone = t.result();
      t.sendResize(61, 21);
      t.stdin?.write('while [ "$(stty size)" != "21 61" ]; do sleep 0.05; done; echo "size=$(stty size)"\n');
      await tout.until(/size=21 61/);
      t.stdin?.write("exit 2\n");
      assert.equal(exitCodeOf((await tdone).error), 2);
      await t.close();

      const a = await SpdyCommandSession.open(
        (await env.d.rt.attach({ containerId: cid, stdin: true, stdout: true, stderr: true })).url,
        V4,
        {
          stdin: true,
          stdout: true,
          stderr: true,
        },
      );
      const aout = watch(a.stdout);
      const adone = a.result();
      a.stdin?.write("one\n");
      await aout.until(/got:one/);
      a.stdin?.end();
      await aout.until(/bye/);
      assert.equal((await adone).error.toString(), '{"metadata":{},"status":"Success"}');
      await a.close();
      assert.deepEqual(streamFiles(cid), []);
    } finally {
      await env.d.rt.stopPodSandbox({ podSandboxId: rp.id });
      await env.d.rt.removePodSandbox({ podSandboxId: rp.id });
    }
  });

  test("bad, reused and expired tokens get 404", async () => {
    const base = new URL(await execUrl(box, ["true"])).origin;
    const bad = `${base}/exec/notatoken`;
    assert.equal((await spdyUpgrade(bad, V4)).status, 404);
    assert.equal((await wsOpen(bad, V5)).status, 404);

    const url = await execUrl(box, ["true"]);
    const first = await SpdyCommandSession.open(url, V4, { stdout: true, stderr: true });
    assert.equal(exitCodeOf((await first.result()).error), 0);
    await first.close();
    assert.equal((await spdyUpgrade(url, V4)).status, 404);
    assert.equal((await wsOpen(url, V5)).status, 404);

    const pf = (await env.d.rt.portForward({ podSandboxId: pod.id, port: [8080] })).url;
    const expired = await execUrl(box, ["true"]);
    await sleep(TOKEN_TTL_MS + 500);
    assert.equal((await spdyUpgrade(expired, V4)).status, 404);
    assert.equal((await wsOpen(pf, ["v4.channel.k8s.io"])).status, 404);
  });

  test("the CRI calls refuse what cannot be streamed", async () => {
    await assert.rejects(
      env.d.rt.exec({ containerId: "nosuch", cmd: ["sh"], stdout: true }),
      (e) => code(e) === grpcStatus.NOT_FOUND,
    );
    await assert.rejects(
      env.d.rt.exec({ containerId: box, cmd: [], stdout: true }),
      (e) => code(e) === grpcStatus.INVALID_ARGUMENT,
    );
    await assert.rejects(
      env.d.rt.exec({ containerId: box, cmd: ["sh"], tty: true, stdout: true, stderr: true }),
      (e) => code(e) === grpcStatus.INVALID_ARGUMENT,
    );
    await assert.rejects(
      env.d.rt.attach({ containerId: "nosuch", stdout: true }),
      (e) => code(e) === grpcStatus.NOT_FOUND,
    );
    await assert.rejects(
      env.d.rt.portForward({ podSandboxId: "nosuch", port: [80] }),
      (e) => code(e) === grpcStatus.NOT_FOUND,
    );

    const quick = await env.runContainer(pod, "quick", ["true"]);
    await until(
      async () =>
        (await env.d.rt.containerStatus({ containerId: quick })).status?.state === ContainerState.CONTAINER_EXITED,
      "exit",
    );
    await assert.rejects(
      env.d.rt.exec({ containerId: quick, cmd: ["sh"], stdout: true }),
      (e) => code(e) === grpcStatus.FAILED_PRECONDITION,
    );
    await assert.rejects(
      env.d.rt.attach({ containerId: quick, stdout: true }),
      (e) => code(e) === grpcStatus.FAILED_PRECONDITION,
    );

    // A command that does not exist fails in the runtime; the client gets the error as a Status.
    const s = await SpdyCommandSession.open(await execUrl(box, ["/no/such/binary"]), V4, {
      stdout: true,
      stderr: true,
    });
    const r = await s.result();
    await s.close();
    const status = JSON.parse(r.error.toString()) as { status: string; message: string };
    assert.equal(status.status, "Failure");
    assert.match(status.message, /error executing command in container: .*no such file or directory/);
    assert.deepEqual(streamFiles(box), []);
  });

  test("a client disconnecting mid-stream leaves no exec process and no fifo behind", async () => {
    const marker = `tick-${Date.now()}`;
    const cmd = ["sh", "-c", `while :; do echo ${marker}; sleep 0.05; done`];
    const running = async () => (await ps(box)).split("\n").some((l) => l.includes(marker));

    const s = await SpdyCommandSession.open(await execUrl(box, cmd, { stdin: true }), V4, {
      stdin: true,
      stdout: true,
      stderr: true,
    });
    await watch(s.stdout).until(new RegExp(marker));
    assert.ok(await running());
    assert.ok(streamFiles(box).length > 0, "the exec's fifos exist while it runs");
    s.conn.destroy();
    await until(
      async () => !(await running()) && streamFiles(box).length === 0,
      "cleanup after the SPDY client vanished",
    );

    const { client } = await wsOpen(await execUrl(box, cmd, { tty: true, stdin: true, stderr: false }), V5);
    const c = client as ChannelClient;
    await c.waitFor(() => c.output(1).toString().includes(marker));
    c.ws.terminate();
    await until(
      async () => !(await running()) && streamFiles(box).length === 0,
      "cleanup after the WebSocket client vanished",
    );

    // A client that stops reading holds the command back; disconnecting then still cleans up.
    const slow = await SpdyCommandSession.open(await execUrl(box, ["cat", "/dev/zero"]), V4, {
      stdout: true,
      stderr: true,
    });
    slow.stdout?.pause();
    await sleep(500);
    assert.match(await ps(box), /cat \/dev\/zero/);
    slow.conn.destroy();
    await until(
      async () => !/cat \/dev\/zero/.test(await ps(box)) && streamFiles(box).length === 0,
      "cleanup of the blocked exec",
    );
  });

  test("after berthd restarts, exec and attach reach the containers that kept running", async () => {
    const ticker = await env.runContainer(pod, "ticker", [
      "sh",
      "-c",
      "i=0; while :; do echo tick$i; i=$((i+1)); sleep 0.1; done",
    ]);
    env.d.kill("SIGKILL");
    await env.restart();
    const url = new URL(await execUrl(box, ["echo", "still here"]));
    assert.equal(url.hostname, "127.0.0.1");
    const s = await SpdyCommandSession.open(url.href, V4, { stdout: true, stderr: true });
    const r = await s.result();
    await s.close();
    assert.equal(r.stdout.toString(), "still here\n");

    const a = await SpdyCommandSession.open(
      (await env.d.rt.attach({ containerId: ticker, stdout: true, stderr: true })).url,
      V4,
      {
        stdout: true,
        stderr: true,
      },
    );
    await watch(a.stdout).until(/tick\d+\n/);
    a.conn.destroy();
  });
});
