// ttrpc message size limits and misbehaving peers: oversized messages, malformed frames, bad stream ids.
import net from "node:net";
import { join } from "node:path";
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { KeyValue, Response } from "../../src/gen/ttrpc/request.js";
import { GrpcCode, ResourceExhaustedError, UnavailableError } from "../../src/util/errors.js";
import { MessageType, TtrpcClient, createClient, encodeFrame, encodeHeader } from "../../src/ttrpc/index.js";
import { RawPeer, TestDefinition, dir, echoBytes, withServer, useSocketDir } from "../helpers/ttrpc-fixtures.js";

useSocketDir();

describe("ttrpc", () => {
  test("an oversized request is refused by the client without being sent", async () => {
    await withServer(async ({ path, obs }) => {
      const conn = await TtrpcClient.connect(path);
      try {
        const client = createClient(TestDefinition, conn);
        await assert.rejects(client.echo({ key: "k", value: "x".repeat(5 << 20) }), (err: Error) => {
          assert.ok(err instanceof ResourceExhaustedError);
          assert.match(err.message, /Test\/Echo is \d+ bytes, over the maximum message size of 4194304; not sent/);
          return true;
        });
        assert.equal(obs.echoCalls, 0);
        assert.equal((await client.echo({ key: "k", value: "small" })).value, "small");
      } finally {
        conn.close();
      }
    });
  });

  test("an oversized frame sent raw is discarded and answered ResourceExhausted; the connection goes on", async () => {
    await withServer(async ({ path }) => {
      const raw = await RawPeer.connect(path);
      const length = (4 << 20) + 1;
      raw.socket.write(encodeHeader({ length, streamId: 1, type: MessageType.REQUEST, flags: 0 }));
      raw.socket.write(Buffer.alloc(length, 0xab));
      const f = await raw.nextFrame();
      assert.equal(f.h.streamId, 1);
      assert.equal(f.h.type, MessageType.RESPONSE);
      const resp = Response.decode(f.p);
      assert.equal(resp.status?.code, GrpcCode.RESOURCE_EXHAUSTED);
      assert.match(resp.status?.message ?? "", /exceeds maximum message size/);

      raw.request(3, "berth.test.v1.Test", "Echo", echoBytes("after", "oversize"));
      const g = await raw.nextFrame();
      assert.equal(g.h.streamId, 3);
      const ok = Response.decode(g.p);
      assert.equal(ok.status?.code ?? 0, GrpcCode.OK);
      assert.deepEqual(KeyValue.decode(ok.payload), { key: "after", value: "oversize" });
      raw.socket.destroy();
    });
  });

  test("an oversized response fails that call clearly, on either side of the limit", async () => {
    await withServer(async ({ path }) => {
      const conn = await TtrpcClient.connect(path);
      const small = await TtrpcClient.connect(path, { maxMessageSize: 1024 });
      try {
        // Over the server's limit: the server refuses to send it.
        await assert.rejects(
          createClient(TestDefinition, conn).big({ key: "", value: String(5 << 20) }),
          (err: Error) => {
            assert.ok(err instanceof ResourceExhaustedError);
            assert.match(
              err.message,
              /response of berth\.test\.v1\.Test\/Big is \d+ bytes, over the maximum message size/,
            );
            return true;
          },
        );
        // Over the client's limit: the client discards the frame and fails just that call.
        const client = createClient(TestDefinition, small);
        await assert.rejects(client.big({ key: "", value: "4000" }), (err: Error) => {
          assert.ok(err instanceof ResourceExhaustedError);
          assert.match(err.message, /over the client's maximum message size of 1024/);
          return true;
        });
        assert.equal((await client.echo({ key: "k", value: "fine" })).value, "fine");
        assert.equal(small.closed, false);
      } finally {
        conn.close();
        small.close();
      }
    });
  });

  test("malformed frames make the server drop that connection only", async () => {
    await withServer(async ({ path }) => {
      const good = await TtrpcClient.connect(path);
      try {
        const client = createClient(TestDefinition, good);
        // Unknown message type.
        const raw1 = await RawPeer.connect(path);
        raw1.socket.write(encodeFrame(1, 0x7, 0, Buffer.from("hello")));
        await raw1.closed;
        // A request frame whose payload is not a ttrpc.Request.
        const raw2 = await RawPeer.connect(path);
        raw2.socket.write(encodeFrame(1, MessageType.REQUEST, 0, Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff])));
        await raw2.closed;
        assert.equal((await client.echo({ key: "k", value: "served" })).value, "served");
      } finally {
        good.close();
      }
    });
  });

  test("stream id rules follow Go ttrpc: even or reused ids get InvalidArgument, connection stays", async () => {
    await withServer(async ({ path }) => {
      const raw = await RawPeer.connect(path);
      raw.request(2, "berth.test.v1.Test", "Echo", echoBytes("a", "b"));
      let f = await raw.nextFrame();
      assert.equal(f.h.streamId, 2);
      assert.equal(Response.decode(f.p).status?.code, GrpcCode.INVALID_ARGUMENT);
      raw.request(5, "berth.test.v1.Test", "Echo", echoBytes("a", "b"));
      f = await raw.nextFrame();
      assert.equal(Response.decode(f.p).status?.code ?? 0, GrpcCode.OK);
      raw.request(3, "berth.test.v1.Test", "Echo", echoBytes("a", "b"));
      f = await raw.nextFrame();
      assert.equal(f.h.streamId, 3);
      assert.equal(Response.decode(f.p).status?.code, GrpcCode.INVALID_ARGUMENT);
      raw.socket.destroy();
    });
  });

  test("a client that gets garbage from its server fails its pending calls", async () => {
    const path = join(dir, "garbage-server.sock");
    const bad = net.createServer((s) => {
      s.once("data", () => s.write(encodeFrame(1, 0x9, 0, Buffer.from("nonsense"))));
    });
    await new Promise<void>((r) => bad.listen(path, r));
    try {
      const conn = await TtrpcClient.connect(path);
      const closed = new Promise<Error | undefined>((r) => conn.once("close", r));
      await assert.rejects(conn.call("x.Y", "Z", new Uint8Array()), (err: Error) => {
        assert.ok(err instanceof UnavailableError);
        assert.match(err.message, /protocol error/);
        return true;
      });
      assert.ok((await closed) instanceof UnavailableError);
      await assert.rejects(conn.call("x.Y", "Z", new Uint8Array()), UnavailableError);
    } finally {
      await new Promise<void>((r) => bad.close(() => r()));
    }
  });
});
