// The CLI's exec/attach client (src/cli/remotecommand.ts) against berth's real streaming
// server, with the tests' host backend standing in for containers: output channels, exit
// codes from the Status, stdin with the v5 close signal, and a tty.
import assert from "node:assert/strict";
import { PassThrough } from "node:stream";
import { after, before, describe, test } from "node:test";
import { streamSession } from "../../src/cli/remotecommand.js";
import { StreamingServer } from "../../src/streaming/server.js";
import { HostBackend } from "../helpers/streaming-host-backend.js";

function sink(): { stream: NodeJS.WriteStream; text: () => string } {
  const p = new PassThrough();
  let text = "";
  p.on("data", (b: Buffer) => (text += b.toString()));
  return { stream: p as unknown as NodeJS.WriteStream, text: () => text };
}

describe("berth exec client over the streaming server", () => {
  let backend: HostBackend;
  let server: StreamingServer;

  before(async () => {
    backend = new HostBackend();
    server = new StreamingServer({ backend, streamCreationTimeoutMs: 2000 });
    await server.start();
  });

  after(async () => {
    await server.stop();
    for (const c of backend.running) if (c.pid) process.kill(-c.pid, "SIGKILL");
  });

  const url = (cmd: string[], o: { tty?: boolean; stdin?: boolean } = {}) =>
    server.getExecUrl({ containerId: "c1", cmd, tty: !!o.tty, stdin: !!o.stdin, stdout: true, stderr: !o.tty });

  test("stdout and stderr go to their streams and the exit code comes back", async () => {
    const out = sink();
    const err = sink();
    const r = await streamSession(url(["sh", "-c", "echo out; echo err >&2; exit 7"]), {
      stdin: false,
      tty: false,
      output: out.stream,
      errorOutput: err.stream,
    });
    assert.equal(r.exitCode, 7);
    assert.equal(out.text(), "out\n");
    assert.equal(err.text(), "err\n");
    const ok = await streamSession(url(["true"]), {
      stdin: false,
      tty: false,
      output: sink().stream,
      errorOutput: sink().stream,
    });
    assert.equal(ok.exitCode, 0);
  });

  test("stdin is sent and its end closes the command's input", async () => {
    const input = new PassThrough();
    const out = sink();
    const done = streamSession(url(["cat"], { stdin: true }), {
      stdin: true,
      tty: false,
      input: input as unknown as NodeJS.ReadStream,
      output: out.stream,
      errorOutput: sink().stream,
    });
    input.end("through stdin\n");
    const r = await done;
    assert.equal(r.exitCode, 0);
    assert.equal(out.text(), "through stdin\n");
  });

  test("with a tty the command runs on a terminal", async () => {
    const out = sink();
    const r = await streamSession(url(["sh", "-c", "tty; exit 2"], { tty: true }), {
      stdin: false,
      tty: true,
      output: out.stream,
      errorOutput: sink().stream,
    });
    assert.equal(r.exitCode, 2);
    assert.match(out.text(), /\/dev\/pts\/\d+/);
  });
});
