// Garbage, truncated and oversized protobuf (issue 8, reliability): on the CRI socket the
// misbehaving caller gets an error while a well-behaved client's calls, running alongside,
// all succeed; on a shim's ttrpc socket the bad connection is answered or dropped and the shim
// keeps serving the daemon (the container stays queryable and exec still works).
import * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { connect, type Socket } from "node:net";
import { test } from "node:test";
import {
  ContainerState,
  NamespaceMode,
  RunPodSandboxRequest,
  VersionRequest,
} from "../../src/gen/cri/runtime/v1/api.js";
import { until, type CriEnv } from "../helpers/cri.js";
import { useCriEnv } from "../helpers/cri-fixture.js";
import { processesNaming } from "../helpers/leaks.js";
import { Response } from "../../src/gen/ttrpc/request.js";

let env: CriEnv;

// Host-network pods only: this file never creates its (unique) bridge.
useCriEnv({ bridge: "berthrel3h", subnet: "10.234.23.0/24" }, (e) => (env = e));

const hostNetwork = { linux: { securityContext: { namespaceOptions: { network: NamespaceMode.NODE } } } };

/** Sends `payload` as the raw request message of `method`; resolves with the status it got. */
function rawCall(client: grpc.Client, method: string, payload: Buffer): Promise<grpc.ServiceError | null> {
  return new Promise((resolve) => {
    client.makeUnaryRequest(
      method,
      (b: Buffer) => b,
      (b: Buffer) => b,
      payload,
      new grpc.Metadata(),
      { deadline: Date.now() + 20_000 },
      (err) => resolve(err),
    );
  });
}

test("garbage, truncated and oversized messages on the CRI socket fail only their caller", async () => {
  const good = new grpc.Client(`unix://${env.d.socket}`, grpc.credentials.createInsecure());
  const bad = new grpc.Client(`unix://${env.d.socket}`, grpc.credentials.createInsecure(), {
    "grpc.max_send_message_length": -1,
    "grpc.max_receive_message_length": -1,
  });
  let stop = false;
  let goodCalls = 0;
  const goodErrors: string[] = [];
  const version = VersionRequest.encode(VersionRequest.fromPartial({ version: "v1" })).finish();
  const wellBehaved = (async () => {
    while (!stop) {
      const err = await rawCall(good, "/runtime.v1.RuntimeService/Version", Buffer.from(version));
      if (err) goodErrors.push(`${err.code} ${err.details}`);
      goodCalls++;
    }
  })();
  try {
    const req = Buffer.from(
      RunPodSandboxRequest.encode(
        RunPodSandboxRequest.fromPartial({ config: env.podConfig("garbage", hostNetwork) }),
      ).finish(),
    );
    const cases: [string, string, Buffer, grpc.status[]][] = [
      // 0xff: field 31, wire type 7, which does not exist.
      [
        "garbage",
        "/runtime.v1.RuntimeService/RunPodSandbox",
        Buffer.alloc(64, 0xff),
        [grpc.status.INTERNAL, grpc.status.INVALID_ARGUMENT],
      ],
      [
        "garbage",
        "/runtime.v1.RuntimeService/Version",
        Buffer.from("\x0a\xff\xff\xff\xff\x0f"),
        [grpc.status.INTERNAL, grpc.status.INVALID_ARGUMENT],
      ],
      [
        "truncated",
        "/runtime.v1.RuntimeService/RunPodSandbox",
        req.subarray(0, Math.floor(req.length / 2)),
        [grpc.status.INTERNAL, grpc.status.INVALID_ARGUMENT],
      ],
      [
        "truncated",
        "/runtime.v1.ImageService/PullImage",
        Buffer.from([0x0a, 0x20, 0x0a, 0x10, 0x61]),
        [grpc.status.INTERNAL, grpc.status.INVALID_ARGUMENT],
      ],
      [
        "oversized",
        "/runtime.v1.RuntimeService/Version",
        Buffer.alloc(17 * 1024 * 1024, 0x00),
        [grpc.status.RESOURCE_EXHAUSTED],
      ],
      [
        "oversized",
        "/runtime.v1.RuntimeService/RunPodSandbox",
        Buffer.concat([Buffer.from([0x0a, 0x80, 0x80, 0x80, 0x09]), Buffer.alloc(18 * 1024 * 1024, 0x41)]),
        [grpc.status.RESOURCE_EXHAUSTED],
      ],
    ];
    for (const [kind, method, payload, codes] of cases) {
      const err = await rawCall(bad, method, payload);
      assert.ok(err, `${kind} ${method}: an error`);
      assert.ok(codes.includes(err.code), `${kind} ${method}: ${grpc.status[err.code]} ${err.details}`);
      console.log(`${kind} ${method} (${payload.length} bytes): ${grpc.status[err.code]}: ${err.details}`);
    }
    // The misbehaving client's channel still works for proper calls too.
    assert.equal(await rawCall(bad, "/runtime.v1.RuntimeService/Version", Buffer.from(version)), null);
  } finally {
    stop = true;
    await wellBehaved;
    good.close();
    bad.close();
  }
  assert.deepEqual(goodErrors, []);
  assert.ok(goodCalls > 0);
  assert.deepEqual((await env.d.rt.listPodSandbox({})).items, [], "no pod half-created from a bad message");
});

/** Writes `chunks` to a fresh connection; resolves with what came back and whether the shim closed it. */
function rawTtrpc(
  path: string,
  chunks: Buffer[],
  opts: { endAfter?: boolean; waitMs?: number } = {},
): Promise<{ data: Buffer; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const s: Socket = connect(path);
    const got: Buffer[] = [];
    let closed = false;
    const done = () => {
      clearTimeout(timer);
      s.destroy();
      resolve({ data: Buffer.concat(got), closed });
    };
    const timer = setTimeout(done, opts.waitMs ?? 3000);
    s.on("data", (b) => got.push(b));
    s.on("error", () => {});
    s.on("close", () => {
      closed = true;
      done();
    });
    s.once("connect", () => {
      for (const c of chunks) s.write(c);
      if (opts.endAfter) s.end();
    });
    s.once("error", (e) => (got.length === 0 && !closed ? reject(e) : undefined));
  });
}

function header(length: number, streamId: number, type: number, flags = 0): Buffer {
  const h = Buffer.alloc(10);
  h.writeUInt32BE(length, 0);
  h.writeUInt32BE(streamId, 4);
  h[8] = type;
  h[9] = flags;
  return h;
}

test("garbage, truncated and oversized frames on a shim socket drop that connection; the shim keeps serving", async () => {
  const pod = await env.runPod("shim-garbage", hostNetwork);
  const cid = await env.runContainer(pod, "c", ["sleep", "1000"]);
  const shim = processesNaming([env.d.socket], [env.d.pid]).find((p) => p.cmd.includes("-berth-serve"));
  assert.ok(shim, "berth's shim runs");
  const sock = /-socket (\S+)/.exec(shim.cmd)![1]!;

  const results: Record<string, { data: Buffer; closed: boolean }> = {};
  // Not ttrpc at all.
  results.http = await rawTtrpc(sock, [Buffer.from("GET / HTTP/1.1\r\nHost: x\r\n\r\n")]);
  // A header with an unknown message type and junk payload.
  results.badType = await rawTtrpc(sock, [header(4, 1, 0x7f), Buffer.from([1, 2, 3, 4])]);
  // A well-framed request whose payload is not a Request message.
  results.badProto = await rawTtrpc(sock, [header(16, 1, 1), Buffer.alloc(16, 0xff)]);
  // A frame cut short, then the client goes away.
  results.truncated = await rawTtrpc(sock, [header(1000, 3, 1), Buffer.alloc(100, 0x0a)], { endAfter: true });
  // A request over the 4 MiB limit: like Go's ttrpc, the payload is skipped as it streams
  // past and the stream is answered RESOURCE_EXHAUSTED; the connection stays usable.
  results.oversized = await rawTtrpc(sock, [header(5 << 20, 5, 1), Buffer.alloc(5 << 20, 0x41)], { waitMs: 5000 });
  // A length far beyond the limit whose bytes never come; the client gives up.
  results.hugeLength = await rawTtrpc(sock, [header(0x7fffffff, 7, 1), Buffer.alloc(64 * 1024, 0x41)], {
    endAfter: true,
  });
  for (const [k, r] of Object.entries(results))
    console.log(`shim socket, ${k}: ${r.closed ? "closed" : "open"}, ${r.data.length} bytes answered`);
  // A frame that can never be valid gets the connection dropped.
  for (const k of ["badType", "badProto"]) assert.ok(results[k]!.closed, `${k}: dropped`);
  const o = results.oversized!;
  assert.ok(o.data.length > 10, "oversized: answered");
  assert.equal(o.data.readUInt32BE(4), 5, "the answer is for the oversized stream");
  assert.equal(o.data[8], 2, "a response frame");
  const status = Response.decode(o.data.subarray(10, 10 + o.data.readUInt32BE(0))).status;
  assert.equal(status?.code, grpc.status.RESOURCE_EXHAUSTED, status?.message);

  // The shim still serves the daemon.
  process.kill(shim.pid, 0);
  const st = (await env.d.rt.containerStatus({ containerId: cid })).status!;
  assert.equal(st.state, ContainerState.CONTAINER_RUNNING);
  const r = await env.d.rt.execSync({ containerId: cid, cmd: ["echo", "alive"], timeout: 10n });
  assert.equal(r.stdout.toString(), "alive\n");
  await env.d.rt.stopContainer({ containerId: cid, timeout: 0n });
  await until(
    async () =>
      (await env.d.rt.containerStatus({ containerId: cid })).status!.state === ContainerState.CONTAINER_EXITED,
    "stop",
  );
  await env.d.rt.stopPodSandbox({ podSandboxId: pod.id });
  await env.d.rt.removePodSandbox({ podSandboxId: pod.id });
});
