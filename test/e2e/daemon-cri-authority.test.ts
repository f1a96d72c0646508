// A real berthd answers gRPC clients whatever :authority they send (issue 12): the socket path
// as kubelet <= 1.26 and crictl 1.26 send it, the percent-encoded path, localhost, another host
// name, an empty one and none at all. The raw HTTP/2 client writes the frames itself (grpc-go's
// HPACK habits: literal once, indexed after), grpc-js is told to send the path as its authority
// for streaming and large calls, and garbage on one connection closes only that connection.
// Each test runs on both gRPC servers: berth's own never looks at :authority; with grpc-js the
// connections whose authority nghttp2 refuses go through the rewriter (grpc-listener.ts).

import assert from "node:assert/strict";
import { connect } from "node:net";
import { test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { RuntimeServiceClient, VersionRequest, VersionResponse } from "../../src/gen/cri/runtime/v1/api.js";
import { CLIENT_PREFACE, Flag, frame, FrameType } from "../../src/cri/transport/h2-frames.js";
import { CLIENT_OPTIONS, startDaemon } from "../helpers/daemon.js";
import { RawGrpcClient } from "../helpers/h2-raw-client.js";

const VERSION = "/runtime.v1.RuntimeService/Version";

function versionBody(version = "v1"): Uint8Array {
  return VersionRequest.encode({ version }).finish();
}

/** Waits until the socket is closed by the other side (or fails the test after 10 s). */
function closedByServer(sock: import("node:net").Socket): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("berthd did not close the connection")), 10_000);
    sock.on("data", () => {});
    sock.on("error", () => {});
    sock.once("close", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

const KINDS = ["berth", "grpc-js"] as const;
const serverConfig = (kind: string, more = "") => `[grpc]\nserver = "${kind}"\n${more}`;

for (const kind of KINDS) {
  test(`${kind}: every :authority a gRPC client may send gets a real Version answer`, async (t) => {
    const d = await startDaemon({ config: serverConfig(kind) });
    t.after(() => d.stop());
    const expected = await d.rt.version({ version: "v1" });
    const authorities: [string, string | undefined][] = [
      ["the socket path (kubelet <= 1.26, crictl 1.26)", d.socket],
      ["the percent-encoded path", encodeURIComponent(d.socket)],
      ["localhost", "localhost"],
      ["another host name", "cri.berth.example:1234"],
      ["an empty authority", ""],
      ["no authority at all", undefined],
    ];
    for (const [what, authority] of authorities) {
      const c = await RawGrpcClient.connect(d.socket);
      try {
        // Three calls on one connection: the later ones index the dynamic table the first one filled.
        for (let i = 0; i < 3; i++) {
          const r = await c.unary(VERSION, versionBody(), { authority });
          assert.equal(r.rstCode, undefined, `${what}: stream reset with HTTP/2 error ${r.rstCode}`);
          assert.equal(r.grpcStatus, 0, `${what}: grpc-status`);
          assert.deepEqual(VersionResponse.decode(r.message!), expected, what);
          assert.ok(r.headers.some(([n, v]) => n === ":status" && v === "200"));
        }
      } finally {
        c.close();
      }
    }
    // grpc-js: only the connections whose authority nghttp2 refuses went through the rewriter.
    const modes = [...d.logs().matchAll(/gRPC connection: (direct|rewriting)/g)].map((m) => m[1]);
    assert.equal(modes.filter((m) => m === "rewriting").length, kind === "grpc-js" ? 3 : 0, modes.join(","));
  });

  test(`${kind}: grpc-js sending the socket path: streaming calls, large requests and many calls work`, async (t) => {
    const d = await startDaemon({ config: serverConfig(kind) });
    t.after(() => d.stop());
    const runtime = new RuntimeServiceClient(`unix://${d.socket}`, grpc.credentials.createInsecure(), {
      ...CLIENT_OPTIONS,
      "grpc.default_authority": d.socket,
    });
    t.after(() => runtime.close());
    const version = (req: { version: string }) =>
      new Promise<VersionResponse>((resolve, reject) =>
        runtime.version(VersionRequest.fromPartial(req), (err, res) => (err ? reject(err) : resolve(res!))),
      );
    const expected = await d.rt.version({});

    // A server-streaming call stays open on the rewritten connection while unary calls go by.
    const events = runtime.getContainerEvents({});
    const ended = new Promise<grpc.ServiceError>((resolve) => events.on("error", resolve));
    events.on("data", () => {});
    // 200 calls: the HPACK tables on both sides keep agreeing as grpc-js's encoder indexes and evicts.
    for (let i = 0; i < 200; i++)
      assert.deepEqual(await version({ version: `v1-${i}-${"x".repeat(i * 10)}` }), expected);
    // A 6 MiB request body crosses the rewriter in many DATA frames and socket chunks.
    assert.deepEqual(await version({ version: "y".repeat(6 << 20) }), expected);
    events.cancel();
    assert.equal((await ended).code, grpc.status.CANCELLED);
    assert.equal(/gRPC connection: rewriting/.test(d.logs()), kind === "grpc-js");
  });

  test(`${kind}: garbage on a connection closes only that connection; good clients keep being served`, async (t) => {
    const d = await startDaemon({ config: serverConfig(kind) });
    t.after(() => d.stop());
    const expected = await d.rt.version({});

    const garbage: [string, Buffer][] = [
      ["random bytes", Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919 + 13) % 251))],
      ["HTTP/1.1", Buffer.from("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")],
      [
        "a bad HPACK block",
        Buffer.concat([
          CLIENT_PREFACE,
          frame(FrameType.SETTINGS, 0, 0),
          frame(FrameType.HEADERS, Flag.END_HEADERS, 1, Buffer.from([0x80])),
        ]),
      ],
      [
        "CONTINUATION without HEADERS",
        Buffer.concat([CLIENT_PREFACE, frame(FrameType.CONTINUATION, Flag.END_HEADERS, 1, Buffer.from([0x82]))]),
      ],
    ];
    for (const [what, bytes] of garbage) {
      const sock = connect(d.socket);
      const closed = closedByServer(sock);
      sock.write(bytes);
      await closed;
      assert.deepEqual(await d.rt.version({}), expected, `still serving after ${what}`);
    }

    // A connection that turns bad after it was rewritten: a good call, then a bad header block.
    const c = await RawGrpcClient.connect(d.socket);
    const r = await c.unary(VERSION, versionBody(), { authority: d.socket });
    assert.equal(r.grpcStatus, 0);
    c.write(frame(FrameType.HEADERS, Flag.END_HEADERS, 3, Buffer.from([0xff, 0x7f])));
    await c.closed;
    // A good client on another connection, with the path as authority too, is unaffected.
    const c2 = await RawGrpcClient.connect(d.socket);
    t.after(() => c2.close());
    assert.equal((await c2.unary(VERSION, versionBody(), { authority: d.socket })).grpcStatus, 0);
    assert.deepEqual(await d.rt.version({}), expected);
    assert.equal(d.logs().match(/not a valid HTTP\/2 client stream/g)?.length, garbage.length + 1);
  });

  test(`${kind}: shutdown ends rewritten and direct connections alike, open streams included`, async () => {
    const d = await startDaemon({ config: serverConfig(kind, `shutdown_timeout = "2s"\n`) });
    const clients = [d.socket, "localhost"].map(
      (authority) =>
        new RuntimeServiceClient(`unix://${d.socket}`, grpc.credentials.createInsecure(), {
          ...CLIENT_OPTIONS,
          "grpc.default_authority": authority,
        }),
    );
    try {
      const ends = clients.map((runtime) => {
        const s = runtime.getContainerEvents({});
        s.on("data", () => {});
        return new Promise<void>((resolve) => {
          s.on("error", () => resolve());
          s.on("end", () => resolve());
        });
      });
      // Make sure both streams are established before stopping.
      await Promise.all(
        clients.map(
          (runtime) => new Promise((res, rej) => runtime.version({ version: "v1" }, (e, v) => (e ? rej(e) : res(v)))),
        ),
      );
      const exit = await d.stop();
      assert.deepEqual(exit, { code: 0, signal: null }, d.logs());
      await Promise.all(ends);
      assert.ok(/berthd stopped/.test(d.logs()));
    } finally {
      for (const c of clients) c.close();
      await d.stop();
    }
  });
}
