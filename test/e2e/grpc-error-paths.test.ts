// berthd's gRPC server refusing and cutting short calls from real clients, whichever server
// [grpc] server selects (BERTHD_GRPC_SERVER in test/helpers/daemon.ts): grpc-go
// (test/go/grpc-error-paths) calls an unknown method and service (UNIMPLEMENTED), sends a
// 17 MiB request (RESOURCE_EXHAUSTED, over the 16 MiB limit), lets a deadline pass and cancels
// during ExecSync (the exec'd process is killed: the cancellation reached the handler), and
// the connection still serves afterwards; a request of exactly 16 MiB is served and one byte
// more is RESOURCE_EXHAUSTED; 200 calls at once on one connection are all answered; 1200
// server-streaming calls cancelled mid-call (RST_STREAM CANCEL), 100 at a time beside 100
// answered calls, leave nothing in the server's stream table (it takes 1000 at once); a raw HTTP/2 client with a JSON content-type gets 415
// through berthd's :authority look-ahead.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { connect } from "node:http2";
import { connect as netConnect } from "node:net";
import { test } from "node:test";
import { promisify } from "node:util";
import { until, type CriEnv } from "../helpers/cri.js";
import { useCriEnv } from "../helpers/cri-fixture.js";
import { goTool } from "../helpers/go-tools.js";

let env: CriEnv;

/** Pids whose command line is exactly `args`. */
function processesRunning(args: string[]): number[] {
  const want = args.join("\0") + "\0";
  const out: number[] = [];
  for (const p of readdirSync("/proc")) {
    if (!/^\d+$/.test(p)) continue;
    try {
      if (readFileSync(`/proc/${p}/cmdline`, "latin1") === want) out.push(Number(p));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

useCriEnv({ bridge: "berthgep0", subnet: "10.234.64.0/24" }, (e) => (env = e));

// Built at load time, so no daemon waits on the compiler.
const bin = goTool("grpc-error-paths", "grpc-error-paths");

test("grpc-go: unknown method and service, requests at and over the limit, a deadline and a cancel, 200 calls at once, cancelled streams", async () => {
  const pod = await env.runPod("errors");
  const container = await env.runContainer(pod, "c", ["sleep", "100000"]);
  const { stdout } = await promisify(execFile)(bin, ["-socket", env.d.socket, "-container", container], {
    timeout: 120_000,
  });
  const lines = new Map(
    stdout
      .trim()
      .split("\n")
      .map((l) => {
        const [name, code, ...msg] = l.split(" "); // "# ..." lines are notes
        return [name!, { code: code!, message: msg.join(" ") }];
      }),
  );
  assert.equal(lines.get("unknown-method")?.code, "Unimplemented", stdout);
  assert.match(lines.get("unknown-method")!.message, /NoSuchMethod/);
  assert.equal(lines.get("unknown-service")?.code, "Unimplemented", stdout);
  assert.equal(lines.get("too-large")?.code, "ResourceExhausted", stdout);
  assert.match(lines.get("too-large")!.message, /larger than max/);
  assert.equal(lines.get("deadline")?.code, "DeadlineExceeded", stdout);
  assert.equal(lines.get("cancel")?.code, "Canceled", stdout);
  assert.equal(lines.get("after")?.code, "OK", stdout);
  assert.equal(lines.get("exact-limit")?.code, "OK", stdout);
  assert.equal(lines.get("one-over")?.code, "ResourceExhausted", stdout);
  assert.match(lines.get("one-over")!.message, /larger than max \(16777217 vs\.? 16777216\)/);
  assert.equal(lines.get("concurrent")?.code, "OK", stdout);
  assert.equal(lines.get("cancel-half")?.code, "OK", stdout);
  assert.match(stdout, /^# 1200 streams cancelled$/m);
  // The handler heard the deadline and the cancel: both exec'd sleeps are killed.
  await until(
    () => processesRunning(["sleep", "3141"]).length + processesRunning(["sleep", "3142"]).length === 0,
    "the exec'd sleeps of the cut-short ExecSync calls to be killed",
  );
  // berthd still serves and still has its container.
  const st = await env.d.rt.containerStatus({ containerId: container, verbose: false });
  assert.equal(st.status?.id, container);
});

test("raw HTTP/2: a request with a content-type other than application/grpc is refused with 415", async () => {
  const session = connect("http://localhost", { createConnection: () => netConnect(env.d.socket) });
  try {
    const status = await new Promise<number | undefined>((resolve, reject) => {
      const req = session.request({
        ":method": "POST",
        ":path": "/runtime.v1.RuntimeService/Version",
        "content-type": "application/json",
      });
      req.on("response", (h) => resolve(h[":status"]));
      req.on("error", reject);
      req.end("{}");
    });
    assert.equal(status, 415);
  } finally {
    session.close();
  }
});
