// ttrpc client and server over real unix sockets, plus wire compatibility with Go's
// ttrpc through containerd's own containerd-shim-runc-v2.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { mkdtemp, readdir, rm, rmdir, stat } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";

import { KeyValue, Request, Response, StringList } from "../src/gen/ttrpc/request.js";
import {
  AlreadyExistsError,
  CanceledError,
  DeadlineExceededError,
  GrpcCode,
  NotFoundError,
  ResourceExhaustedError,
  UnavailableError,
  UnimplementedError,
} from "../src/util/errors.js";
import {
  type CallContext,
  FrameParser,
  type FrameHeader,
  MessageType,
  TtrpcClient,
  TtrpcServer,
  createClient,
  encodeFrame,
  encodeHeader,
} from "../src/ttrpc/index.js";

// A test service in the shape ts-proto generates (`XDefinition`), built on real generated codecs.
const TestDefinition = {
  name: "Test",
  fullName: "berth.test.v1.Test",
  methods: {
    echo: {
      name: "Echo",
      requestType: KeyValue,
      requestStream: false,
      responseType: KeyValue,
      responseStream: false,
      options: {},
    },
    metadata: {
      name: "Metadata",
      requestType: KeyValue,
      requestStream: false,
      responseType: StringList,
      responseStream: false,
      options: {},
    },
    fail: {
      name: "Fail",
      requestType: KeyValue,
      requestStream: false,
      responseType: KeyValue,
      responseStream: false,
      options: {},
    },
    hang: {
      name: "Hang",
      requestType: KeyValue,
      requestStream: false,
      responseType: KeyValue,
      responseStream: false,
      options: {},
    },
    big: {
      name: "Big",
      requestType: KeyValue,
      requestStream: false,
      responseType: KeyValue,
      responseStream: false,
      options: {},
    },
    missing: {
      name: "Missing",
      requestType: KeyValue,
      requestStream: false,
      responseType: KeyValue,
      responseStream: false,
      options: {},
    },
    count: {
      name: "Count",
      requestType: KeyValue,
      requestStream: false,
      responseType: KeyValue,
      responseStream: true,
      options: {},
    },
    join: {
      name: "Join",
      requestType: KeyValue,
      requestStream: true,
      responseType: KeyValue,
      responseStream: false,
      options: {},
    },
    upper: {
      name: "Upper",
      requestType: KeyValue,
      requestStream: true,
      responseType: KeyValue,
      responseStream: true,
      options: {},
    },
  },
} as const;

interface Observed {
  echoCalls: number;
  hangAborted: Promise<unknown>;
  hangStarted: Promise<void>;
}

function startTestServer(server: TtrpcServer): Observed {
  let onAbort!: (reason: unknown) => void;
  let onStart!: () => void;
  const obs: Observed = {
    echoCalls: 0,
    hangAborted: new Promise((r) => (onAbort = r)),
    hangStarted: new Promise((r) => (onStart = r)),
  };
  server.register(TestDefinition, {
    async echo(req) {
      obs.echoCalls++;
      // Answer out of order so matching by stream id is really exercised.
      if (req.key === "shuffle") await new Promise((r) => setTimeout(r, Number(req.value) % 7));
      return { key: req.key, value: req.value };
    },
    metadata(_req, ctx: CallContext) {
      return { list: [...ctx.metadata.entries()].sort().map(([k, v]) => `${k}=${v.join(",")}`) };
    },
    fail(req) {
      if (req.key === "notfound") throw new NotFoundError(`container ${req.value} not found`);
      throw new Error("plain failure");
    },
    hang(_req, ctx) {
      onStart();
      return new Promise((_resolve, reject) => {
        ctx.signal.addEventListener("abort", () => {
          onAbort(ctx.signal.reason);
          reject(ctx.signal.reason);
        });
      });
    },
    big(req) {
      return { key: "big", value: "x".repeat(Number(req.value)) };
    },
    async *count(req) {
      for (let i = 1; i <= Number(req.value); i++) yield { key: req.key, value: String(i) };
    },
    async join(reqs) {
      const parts: string[] = [];
      for await (const r of reqs) parts.push(r.value);
      return { key: "joined", value: parts.join("+") };
    },
    async *upper(reqs) {
      for await (const r of reqs) yield { key: r.key, value: r.value.toUpperCase() };
    },
  });
  return obs;
}

/** A raw socket speaking frames by hand, to send what a well-behaved client never would. */
class RawPeer {
  readonly frames: { h: FrameHeader; p: Buffer }[] = [];
  private waiters: (() => void)[] = [];
  readonly closed: Promise<void>;
  constructor(readonly socket: net.Socket) {
    const parser = new FrameParser(
      {
        frame: (h, p) => {
          this.frames.push({ h, p: Buffer.from(p) });
          for (const w of this.waiters.splice(0)) w();
        },
        oversized: () => assert.fail("server sent an oversized frame"),
      },
      64 << 20,
    );
    socket.on("data", (c: Buffer) => parser.push(c));
    socket.on("error", () => {});
    this.closed = new Promise((r) => socket.once("close", () => r()));
  }
  static connect(path: string): Promise<RawPeer> {
    return new Promise((resolve, reject) => {
      const s = net.createConnection({ path });
      s.once("connect", () => resolve(new RawPeer(s)));
      s.once("error", reject);
    });
  }
  async nextFrame(): Promise<{ h: FrameHeader; p: Buffer }> {
    while (this.frames.length === 0) await new Promise<void>((r) => this.waiters.push(r));
    return this.frames.shift()!;
  }
  request(id: number, service: string, method: string, payload: Uint8Array): void {
    const req = Request.encode({
      service,
      method,
      payload: Buffer.from(payload),
      timeoutNano: 0n,
      metadata: [],
    }).finish();
    this.socket.write(encodeFrame(id, MessageType.REQUEST, 0, req));
  }
}

function echoBytes(key: string, value: string): Uint8Array {
  return KeyValue.encode({ key, value }).finish();
}

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "berth-ttrpc-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

let seq = 0;
async function withServer(
  fn: (ctx: { path: string; server: TtrpcServer; obs: Observed }) => Promise<void>,
  opts: ConstructorParameters<typeof TtrpcServer>[0] = {},
): Promise<void> {
  const path = join(dir, `s${++seq}.sock`);
  const server = new TtrpcServer(opts);
  const obs = startTestServer(server);
  await server.listen(path);
  try {
    await fn({ path, server, obs });
  } finally {
    await server.close({ timeoutMs: 1000 });
  }
}

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

  test(
    "when the server process dies mid-call, pending and later calls fail with Unavailable",
    { timeout: 60_000 },
    async () => {
      const path = join(dir, "dying.sock");
      const ttrpcIndex = new URL("../src/ttrpc/index.js", import.meta.url).href;
      // A real separate server process whose handler never answers.
      const script = `
      import { TtrpcServer } from ${JSON.stringify(ttrpcIndex)};
      const server = new TtrpcServer();
      server.register({ name: "Hang", fullName: "berth.test.v1.Hang", methods: { hang: {
        name: "Hang", requestStream: false, responseStream: false,
        requestType: { encode: () => ({ finish: () => new Uint8Array() }), decode: () => ({}) },
        responseType: { encode: () => ({ finish: () => new Uint8Array() }), decode: () => ({}) } } } },
        { hang: () => new Promise(() => {}) });
      await server.listen(${JSON.stringify(path)});
      process.stdout.write("ready\\n");
      setInterval(() => {}, 1000);
    `;
      const child = spawn(process.execPath, ["--input-type=module", "-e", script], {
        stdio: ["ignore", "pipe", "inherit"],
      });
      try {
        await new Promise<void>((resolve, reject) => {
          child.stdout!.once("data", () => resolve());
          child.once("exit", (code) => reject(new Error(`server child exited ${code}`)));
        });
        const conn = await TtrpcClient.connect(path);
        const closed = new Promise<Error | undefined>((r) => conn.once("close", r));
        const calls = Array.from({ length: 5 }, () => conn.call("berth.test.v1.Hang", "Hang", new Uint8Array()));
        // Let the requests reach the server before killing it.
        await new Promise((r) => setTimeout(r, 100));
        child.kill("SIGKILL");
        for (const c of calls) await assert.rejects(c, UnavailableError);
        assert.ok((await closed) instanceof UnavailableError);
        assert.equal(conn.closed, true);
        await assert.rejects(conn.call("berth.test.v1.Hang", "Hang", new Uint8Array()), UnavailableError);
      } finally {
        child.kill("SIGKILL");
      }
    },
  );

  test("a client timeout fails with DeadlineExceeded and the handler's signal is aborted", async () => {
    await withServer(async ({ path, obs }) => {
      const conn = await TtrpcClient.connect(path);
      try {
        const client = createClient(TestDefinition, conn);
        await assert.rejects(client.hang({ key: "", value: "" }, { timeoutMs: 200 }), DeadlineExceededError);
        // The server learned the deadline from timeout_nano and aborted the handler itself.
        assert.ok((await obs.hangAborted) instanceof DeadlineExceededError);
        assert.equal(conn.pendingCalls, 0);
        assert.equal((await client.echo({ key: "k", value: "after timeout" })).value, "after timeout");
      } finally {
        conn.close();
      }
    });
  });

  test("aborting a call's signal fails it with Canceled", async () => {
    await withServer(async ({ path, obs }) => {
      const conn = await TtrpcClient.connect(path);
      try {
        const ac = new AbortController();
        const p = createClient(TestDefinition, conn).hang({ key: "", value: "" }, { signal: ac.signal });
        await obs.hangStarted;
        ac.abort();
        await assert.rejects(p, CanceledError);
        assert.equal(conn.pendingCalls, 0);
      } finally {
        conn.close();
      }
    });
  });

  test("streaming calls: server, client and bidirectional streams", async () => {
    await withServer(async ({ path }) => {
      const conn = await TtrpcClient.connect(path);
      try {
        const client = createClient(TestDefinition, conn);
        const counted: string[] = [];
        for await (const m of client.count({ key: "n", value: "4" })) counted.push(m.value);
        assert.deepEqual(counted, ["1", "2", "3", "4"]);

        const joined = await client.join([
          { key: "", value: "a" },
          { key: "", value: "b" },
          { key: "", value: "c" },
        ]);
        assert.equal(joined.value, "a+b+c");

        const upper: string[] = [];
        for await (const m of client.upper([
          { key: "", value: "x" },
          { key: "", value: "yz" },
        ]))
          upper.push(m.value);
        assert.deepEqual(upper, ["X", "YZ"]);
        // Unary calls interleave fine with streams on the same connection.
        assert.equal((await client.echo({ key: "k", value: "v" })).value, "v");
      } finally {
        conn.close();
      }
    });
  });

  test("close waits for in-flight calls, refuses new connections and removes the socket", async () => {
    const path = join(dir, "graceful.sock");
    const server = new TtrpcServer();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let started!: () => void;
    const isStarted = new Promise<void>((r) => (started = r));
    server.register(TestDefinition, {
      async echo(req) {
        started();
        await gate;
        return req;
      },
    });
    await server.listen(path);
    const conn = await TtrpcClient.connect(path);
    const inflight = createClient(TestDefinition, conn).echo({ key: "slow", value: "done" });
    await isStarted;
    const closing = server.close({ timeoutMs: 30_000 });
    await assert.rejects(TtrpcClient.connect(path), UnavailableError);
    release();
    assert.equal((await inflight).value, "done");
    await closing;
    assert.equal(existsSync(path), false);
    conn.close();
  });
});

// Wire compatibility with Go's ttrpc: containerd's runc shim (containerd 1.6) is a Go ttrpc
// server (its Task service) and a Go ttrpc client (it forwards events to TTRPC_ADDRESS).
const shimBinary = ["/usr/bin/containerd-shim-runc-v2", "/usr/local/bin/containerd-shim-runc-v2"].find((p) =>
  existsSync(p),
);
const haveRunc = spawnSync("runc", ["--version"]).status === 0 && existsSync("/usr/bin/busybox");
const TASK = "containerd.task.v2.Task";

/** A started runc shim in its own temp dir, and everything needed to clean it up. */
class ShimHarness {
  readonly ns = `berth-ttrpc-test-${process.pid}`;
  readonly id = `t${Date.now()}`;
  address = "";
  shimPid = 0;
  log = "";
  private logReader: ChildProcess | undefined;
  private constructor(
    readonly work: string,
    readonly bundle: string,
  ) {}

  static async create(withRootfs: boolean): Promise<ShimHarness> {
    const work = await mkdtemp(join(tmpdir(), "berth-ttrpc-shim-"));
    const h = new ShimHarness(work, join(work, "bundle"));
    mkdirSync(h.bundle);
    if (withRootfs) {
      mkdirSync(join(h.bundle, "rootfs", "bin"), { recursive: true });
      copyFileSync("/usr/bin/busybox", join(h.bundle, "rootfs", "bin", "busybox"));
      assert.equal(spawnSync("runc", ["spec"], { cwd: h.bundle }).status, 0);
      const spec = JSON.parse(readFileSync(join(h.bundle, "config.json"), "utf8")) as {
        process: { terminal: boolean; args: string[] };
      };
      spec.process.terminal = false;
      spec.process.args = ["/bin/busybox", "sleep", "30"];
      writeFileSync(join(h.bundle, "config.json"), JSON.stringify(spec));
    } else {
      writeFileSync(join(h.bundle, "config.json"), JSON.stringify({ ociVersion: "1.0.2", annotations: {} }));
    }
    // The shim writes its log to a fifo named "log" in the bundle; somebody must read it.
    assert.equal(spawnSync("mkfifo", [join(h.bundle, "log")]).status, 0);
    h.logReader = spawn("cat", [join(h.bundle, "log")], { stdio: ["ignore", "pipe", "ignore"] });
    h.logReader.stdout!.on("data", (c: Buffer) => (h.log += c.toString()));
    return h;
  }

  get ttrpcAddress(): string {
    return join(this.work, "ttrpc.sock");
  }

  /** `containerd-shim-runc-v2 start` as containerd runs it; returns the printed address. */
  start(): string {
    const res = spawnSync(
      shimBinary!,
      [
        "-namespace",
        this.ns,
        "-address",
        join(this.work, "containerd.sock"),
        "-publish-binary",
        "/bin/true",
        "-id",
        this.id,
        "start",
      ],
      {
        cwd: this.bundle,
        env: { ...process.env, TTRPC_ADDRESS: this.ttrpcAddress },
        encoding: "utf8",
        timeout: 20_000,
      },
    );
    assert.equal(res.status, 0, `shim start failed: ${res.stderr}`);
    this.address = res.stdout.trim();
    assert.match(this.address, /^unix:\/\/\//);
    return this.address;
  }

  async cleanup(): Promise<void> {
    if (this.shimPid > 0 && processAlive(this.shimPid)) {
      await waitFor(() => !processAlive(this.shimPid), 5000);
      if (processAlive(this.shimPid)) process.kill(this.shimPid, "SIGKILL");
    }
    this.logReader?.kill();
    if (this.address) await rm(this.address.replace(/^unix:\/\//, ""), { force: true });
    // The shim keeps runc state under /run/containerd/runc/<namespace>; empty after Delete.
    await rmdir(join("/run/containerd/runc", this.ns)).catch(() => {});
    await rm(this.work, { recursive: true, force: true });
  }
}

describe(
  "ttrpc against containerd-shim-runc-v2 (Go ttrpc)",
  { skip: shimBinary === undefined ? "containerd-shim-runc-v2 not installed" : false },
  () => {
    test(
      "our client: Connect, State, unknown method and Shutdown against a Go ttrpc server",
      { timeout: 60_000 },
      async () => {
        const shim = await ShimHarness.create(false);
        let conn: TtrpcClient | undefined;
        try {
          conn = await TtrpcClient.connect(shim.start());
          const closed = new Promise<Error | undefined>((r) => conn!.once("close", r));
          const md = { "containerd-namespace-ttrpc": shim.ns };

          // Connect {id=1}: answers ConnectResponse {shim_pid=1, task_pid=2}.
          const connectResp = await conn.call(TASK, "Connect", fieldString(1, "nope"), {
            metadata: md,
            timeoutMs: 10_000,
          });
          shim.shimPid = Number(readField(connectResp, 1));
          assert.ok(shim.shimPid > 0);
          assert.match(readFileSync(`/proc/${shim.shimPid}/cmdline`, "utf8"), /containerd-shim-runc-v2/);

          // State {id=1} for a task that does not exist: Go maps errdefs.ErrNotFound to NotFound.
          await assert.rejects(
            conn.call(TASK, "State", fieldString(1, "nope"), { metadata: md, timeoutMs: 10_000 }),
            (err: Error) => {
              assert.ok(err instanceof NotFoundError, `got ${err.name}: ${err.message}`);
              return true;
            },
          );
          // Many at once, multiplexed on one connection with a Go peer.
          const many = await Promise.allSettled(
            Array.from({ length: 200 }, () => conn!.call(TASK, "State", fieldString(1, "nope"), { metadata: md })),
          );
          assert.ok(many.every((r) => r.status === "rejected" && r.reason instanceof NotFoundError));
          // Go ttrpc's own Unimplemented answers.
          await assert.rejects(conn.call(TASK, "NoSuchMethod", new Uint8Array(), { metadata: md }), UnimplementedError);
          await assert.rejects(
            conn.call("no.such.Service", "X", new Uint8Array(), { metadata: md }),
            UnimplementedError,
          );

          // Shutdown {id=1, now=2}: the shim has no tasks, so it exits and the connection closes.
          const shutdown = Buffer.concat([fieldString(1, "nope"), Buffer.from([0x10, 0x01])]);
          await conn.call(TASK, "Shutdown", shutdown, { metadata: md }).catch((err: Error) => {
            // The shim may exit before its answer is flushed; then the call fails as the connection drops.
            assert.ok(err instanceof UnavailableError, `unexpected ${err.name}: ${err.message}`);
          });
          assert.ok((await closed) instanceof UnavailableError);
          assert.equal(conn.closed, true);
        } catch (err) {
          (err as Error).message += `\nshim log:\n${shim.log}`;
          throw err;
        } finally {
          conn?.close();
          await shim.cleanup();
        }
      },
    );

    test(
      "our server: the shim's Go ttrpc client forwards task events to it",
      { timeout: 60_000, skip: haveRunc ? false : "runc or busybox missing" },
      async () => {
        const shim = await ShimHarness.create(true);
        const events = new TtrpcServer();
        const received: { topic: string; namespace: string; metadataNs: string[] | undefined }[] = [];
        events.register(
          {
            name: "Events",
            fullName: "containerd.services.events.ttrpc.v1.Events",
            methods: {
              forward: {
                name: "Forward",
                requestType: rawCodec,
                requestStream: false,
                responseType: rawCodec,
                responseStream: false,
              },
            },
          },
          {
            // ForwardRequest {envelope=1: Envelope {timestamp=1, namespace=2, topic=3, event=4}}.
            forward(req, ctx) {
              const envelope = readField(req, 1) as Buffer;
              received.push({
                topic: (readField(envelope, 3) as Buffer).toString(),
                namespace: (readField(envelope, 2) as Buffer).toString(),
                metadataNs: ctx.metadata.get("containerd-namespace-ttrpc"),
              });
              return Buffer.alloc(0);
            },
          },
        );
        await events.listen(shim.ttrpcAddress);
        let conn: TtrpcClient | undefined;
        try {
          conn = await TtrpcClient.connect(shim.start());
          const md = { metadata: { "containerd-namespace-ttrpc": shim.ns }, timeoutMs: 20_000 };
          shim.shimPid = Number(readField(await conn.call(TASK, "Connect", fieldString(1, shim.id), md), 1));
          // Create {id=1, bundle=2} with no rootfs mounts: runc creates the container from bundle/rootfs.
          const created = await conn.call(
            TASK,
            "Create",
            Buffer.concat([fieldString(1, shim.id), fieldString(2, shim.bundle)]),
            md,
          );
          assert.ok(Number(readField(created, 1)) > 0, "Create returns the init pid");
          await conn.call(TASK, "Delete", fieldString(1, shim.id), md);
          await waitFor(() => received.some((e) => e.topic === "/tasks/delete"), 10_000);
          const topics = received.map((e) => e.topic);
          assert.equal(topics[0], "/tasks/create");
          assert.equal(topics.at(-1), "/tasks/delete");
          for (const e of received) {
            assert.equal(e.namespace, shim.ns);
            assert.deepEqual(e.metadataNs, [shim.ns]);
          }
          await conn.call(TASK, "Shutdown", fieldString(1, shim.id), md).catch((err: Error) => {
            assert.ok(err instanceof UnavailableError, `unexpected ${err.name}: ${err.message}`);
          });
        } catch (err) {
          (err as Error).message += `\nshim log:\n${shim.log}`;
          throw err;
        } finally {
          conn?.close();
          await shim.cleanup();
          await events.close({ timeoutMs: 1000 });
        }
      },
    );
  },
);

const rawCodec = {
  encode: (b: Buffer) => ({ finish: () => b }),
  decode: (b: Uint8Array) => Buffer.from(b),
};

function fieldString(field: number, value: string): Buffer {
  const v = Buffer.from(value);
  assert.ok(v.length < 128);
  return Buffer.concat([Buffer.from([(field << 3) | 2, v.length]), v]);
}

/** Reads the first occurrence of a varint or length-delimited field (enough for small hand-checked messages). */
function readField(buf: Buffer, field: number): number | Buffer | undefined {
  let pos = 0;
  const varint = () => {
    let result = 0;
    let shift = 0;
    for (;;) {
      const b = buf[pos++]!;
      result += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return result;
      shift += 7;
    }
  };
  while (pos < buf.length) {
    const tag = varint();
    const wire = tag % 8;
    const num = Math.floor(tag / 8);
    if (wire === 0) {
      const v = varint();
      if (num === field) return v;
    } else if (wire === 2) {
      const len = varint();
      if (num === field) return buf.subarray(pos, pos + len);
      pos += len;
    } else throw new Error(`unexpected wire type ${wire}`);
  }
  return undefined;
}

/** Alive and not a zombie (a reparented shim may linger as one when nothing reaps it). */
function processAlive(pid: number): boolean {
  try {
    const st = readFileSync(`/proc/${pid}/stat`, "utf8");
    return !/^\d+ \(.*\) Z/.test(st);
  } catch {
    return false;
  }
}

async function waitFor(cond: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
}
