// ttrpc client and server over real unix sockets: framing, typed calls, socket files, errors, concurrency.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { AlreadyExistsError, GrpcCode, NotFoundError, UnimplementedError } from "../../src/util/errors.js";
import {
  FrameParser,
  MessageType,
  TtrpcClient,
  TtrpcServer,
  createClient,
  encodeFrame,
  encodeHeader,
} from "../../src/ttrpc/index.js";
import { TestDefinition, dir, startTestServer, withServer, useSocketDir } from "../helpers/ttrpc-fixtures.js";

useSocketDir();

describe("ttrpc frames", () => {
  test("the parser reassembles frames split at every byte and never trusts a huge length", () => {
    const frames: [number, number, number, string][] = [];
    const oversized: number[] = [];
    const parser = new FrameParser(
      {
        frame: (h, p) => frames.push([h.streamId, h.type, h.flags, p.toString()]),
        oversized: (h) => oversized.push(h.streamId),
      },
      16,
    );
    const wire = Buffer.concat([
      encodeFrame(1, MessageType.REQUEST, 0, Buffer.from("hello")),
      encodeFrame(3, MessageType.DATA, 0x5, Buffer.alloc(0)),
      encodeFrame(5, MessageType.REQUEST, 0, Buffer.alloc(17, 0x61)), // one byte over the limit
      encodeFrame(7, MessageType.RESPONSE, 0, Buffer.from("after")),
    ]);
    for (let i = 0; i < wire.length; i++) parser.push(wire.subarray(i, i + 1));
    assert.deepEqual(frames, [
      [1, 1, 0, "hello"],
      [3, 3, 5, ""],
      [7, 2, 0, "after"],
    ]);
    assert.deepEqual(oversized, [5]);
    assert.ok(parser.idle);
    // A header claiming 4 GiB is only counted down, never allocated.
    parser.push(encodeHeader({ length: 0xffffffff, streamId: 9, type: 1, flags: 0 }));
    parser.push(Buffer.alloc(1024));
    assert.equal(parser.idle, false);
    assert.deepEqual(oversized, [5]);
  });
});

describe("ttrpc", () => {
  test("typed round trip carries metadata with lower-case keys", async () => {
    await withServer(async ({ path }) => {
      const conn = await TtrpcClient.connect(`unix://${path}`);
      try {
        const client = createClient(TestDefinition, conn);
        assert.deepEqual(await client.echo({ key: "a", value: "b" }), { key: "a", value: "b" });
        const md = await client.metadata(
          { key: "", value: "" },
          { metadata: { "containerd-namespace-ttrpc": "k8s.io", "X-Multi": ["one", "two"] } },
        );
        assert.deepEqual(md.list, ["containerd-namespace-ttrpc=k8s.io", "x-multi=one,two"]);
      } finally {
        conn.close();
      }
    });
  });

  test("socket file is created with mode 0600 (or as asked) and removed on close", async () => {
    const path = join(dir, "mode.sock");
    const server = new TtrpcServer();
    await server.listen(path);
    assert.equal((await stat(path)).mode & 0o777, 0o600);
    assert.ok((await stat(path)).isSocket());
    await server.close();
    assert.equal(existsSync(path), false);

    const server2 = new TtrpcServer();
    await server2.listen(path, { mode: 0o660 });
    assert.equal((await stat(path)).mode & 0o777, 0o660);
    await server2.close();
    // The bind-then-rename detour leaves nothing behind.
    assert.deepEqual(
      (await readdir(dir)).filter((n) => n.startsWith(".ttrpc-")),
      [],
    );
  });

  test("listen replaces a stale socket file but refuses a live one and abstract names", async () => {
    await withServer(async ({ path }) => {
      await assert.rejects(new TtrpcServer().listen(path), AlreadyExistsError);
    });
    const stale = join(dir, "stale.sock");
    // A socket file nobody listens on any more: what a crashed server leaves behind.
    const child = spawnSync(process.execPath, [
      "-e",
      `require("net").createServer().listen(${JSON.stringify(stale)}, () => process.exit(0))`,
    ]);
    assert.equal(child.status, 0);
    assert.ok((await stat(stale)).isSocket());
    const server = new TtrpcServer();
    startTestServer(server);
    await server.listen(stale);
    const conn = await TtrpcClient.connect(stale);
    assert.deepEqual(await createClient(TestDefinition, conn).echo({ key: "k", value: "v" }), { key: "k", value: "v" });
    conn.close();
    await server.close();
    await assert.rejects(new TtrpcServer().listen("@abstract"), /abstract/);
  });

  test("handler errors map to typed errors; unknown service and method are Unimplemented", async () => {
    await withServer(async ({ path }) => {
      const conn = await TtrpcClient.connect(path);
      try {
        const client = createClient(TestDefinition, conn);
        await assert.rejects(client.fail({ key: "notfound", value: "abc" }), (err: Error) => {
          assert.ok(err instanceof NotFoundError);
          assert.equal(err.message, "container abc not found");
          return true;
        });
        await assert.rejects(client.fail({ key: "other", value: "" }), (err: Error & { grpcCode?: number }) => {
          assert.equal(err.grpcCode, GrpcCode.UNKNOWN);
          assert.equal(err.message, "plain failure");
          return true;
        });
        // Defined in the service but not implemented by the server.
        await assert.rejects(client.missing({ key: "", value: "" }), (err: Error) => {
          assert.ok(err instanceof UnimplementedError);
          assert.match(err.message, /Missing/);
          return true;
        });
        await assert.rejects(conn.call("berth.test.v1.Test", "NoSuchMethod", new Uint8Array()), (err: Error) => {
          assert.ok(err instanceof UnimplementedError);
          assert.match(err.message, /NoSuchMethod/);
          return true;
        });
        await assert.rejects(conn.call("no.such.Service", "Echo", new Uint8Array()), (err: Error) => {
          assert.ok(err instanceof UnimplementedError);
          assert.match(err.message, /no\.such\.Service/);
          return true;
        });
        // The connection is still good after error answers.
        assert.equal((await client.echo({ key: "still", value: "ok" })).value, "ok");
      } finally {
        conn.close();
      }
    });
  });

  test("1,000 concurrent calls on one connection each get their own answer", async () => {
    await withServer(async ({ path }) => {
      const conn = await TtrpcClient.connect(path);
      try {
        const client = createClient(TestDefinition, conn);
        const results = await Promise.all(
          Array.from({ length: 1000 }, (_, i) => client.echo({ key: "shuffle", value: String(i) })),
        );
        results.forEach((r, i) => assert.equal(r.value, String(i)));
        assert.equal(conn.pendingCalls, 0);
      } finally {
        conn.close();
      }
    });
  });
});
