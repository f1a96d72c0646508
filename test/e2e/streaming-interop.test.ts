// Interop with the SPDY implementation kubelet, kubectl and crictl use: a small Go client built
// on moby/spdystream (test/go/go-spdy-client, built from the Go module proxy by
// scripts/go-tools.sh), doing what client-go's remotecommand and portforward do. spdystream does
// no flow control and compresses headers with its own zlib, so this checks the framing, the
// header dictionary and the no-WINDOW_UPDATE path against the real thing.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { StreamingServer } from "../../src/streaming/server.js";
import { goTool } from "../helpers/go-tools.js";
import { HostBackend } from "../helpers/streaming-host-backend.js";

function run(
  bin: string,
  args: string[],
  input: Buffer,
): Promise<{ code: number | null; stdout: Buffer; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(bin, args, { stdio: "pipe" });
    const out: Buffer[] = [];
    let err = "";
    p.stdout.on("data", (c: Buffer) => out.push(c));
    p.stderr.on("data", (c: Buffer) => (err += c.toString()));
    p.on("error", reject);
    p.on("close", (code) => resolve({ code, stdout: Buffer.concat(out), stderr: err }));
    p.stdin.end(input);
  });
}

describe("streaming interop with spdystream (client-go's SPDY)", () => {
  let tmp: string;
  let bin: string;
  let server: StreamingServer;
  const backend = new HostBackend();
  const execUrl = (cmd: string[], stdin = false) =>
    server.getExecUrl({ containerId: "c", cmd, tty: false, stdin, stdout: true, stderr: true });

  before(async () => {
    bin = goTool("go-spdy-client");
    tmp = mkdtempSync(join(tmpdir(), "berth-spdy-interop-"));
    server = new StreamingServer({ backend });
    await server.start();
  });

  after(async () => {
    await server?.stop();
    rmSync(tmp, { recursive: true, force: true });
  });

  test("exec: stdout, stderr and the exit code Status, negotiated like client-go", async () => {
    const status = join(tmp, "status1");
    const protocols = "v4.channel.k8s.io,v3.channel.k8s.io,v2.channel.k8s.io,channel.k8s.io";
    // The Go client always opens stdin; this command ignores it.
    const r = await run(
      bin,
      ["exec", execUrl(["sh", "-c", "echo out; echo err >&2; exit 3"], true), protocols, status],
      Buffer.alloc(0),
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString(), "out\n");
    assert.equal(r.stderr, "protocol=v4.channel.k8s.io\nerr\n");
    const st = JSON.parse(readFileSync(status, "utf8")) as {
      reason: string;
      details: { causes: { reason: string; message: string }[] };
    };
    assert.equal(st.reason, "NonZeroExitCode");
    assert.deepEqual(st.details.causes, [{ reason: "ExitCode", message: "3" }]);
  });

  test("exec: stdin reaches cat and its end ends it; v5 is accepted over SPDY", async () => {
    const status = join(tmp, "status2");
    const r = await run(
      bin,
      ["exec", execUrl(["cat"], true), "v5.channel.k8s.io,v4.channel.k8s.io", status],
      Buffer.from("via spdystream\n"),
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString(), "via spdystream\n");
    assert.match(r.stderr, /^protocol=v5\.channel\.k8s\.io\n/);
    assert.equal(readFileSync(status, "utf8"), '{"metadata":{},"status":"Success"}');
  });

  test("exec: 10 MB arrives intact to a client that does no SPDY flow control", async () => {
    const data = randomBytes(10 * 1024 * 1024);
    const file = join(tmp, "big");
    writeFileSync(file, data);
    const r = await run(
      bin,
      ["exec", execUrl(["cat", file], true), "v4.channel.k8s.io", join(tmp, "status3")],
      Buffer.alloc(0),
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.length, data.length);
    assert.equal(createHash("sha256").update(r.stdout).digest("hex"), createHash("sha256").update(data).digest("hex"));
  });

  test("port forward: a full HTTP request and response", async () => {
    const target = http.createServer((req, res) => res.end(`hello from ${req.url}`));
    await new Promise<void>((r) => target.listen(0, "127.0.0.1", r));
    const port = (target.address() as AddressInfo).port;
    try {
      const url = server.getPortForwardUrl({ podSandboxId: "pod", ports: [port] });
      const req = Buffer.from("GET /interop HTTP/1.1\r\nHost: pod\r\nConnection: close\r\n\r\n");
      const r = await run(bin, ["portforward", url, String(port)], req);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout.toString(), /^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\nhello from \/interop$/);
      assert.equal(r.stderr, "");
    } finally {
      await new Promise((r) => target.close(r));
    }
  });
});
