// ttrpc client and server over real unix sockets, plus wire compatibility with Go's
// ttrpc through containerd's own containerd-shim-runc-v2.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { mkdtemp, readdir, rm, stat } from "node:fs/promises";
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

// Wire compatibility with Go's ttrpc: containerd's runc shim (containerd 1.6) is a ttrpc server.
const shimBinary = ["/usr/bin/containerd-shim-runc-v2", "/usr/local/bin/containerd-shim-runc-v2"].find((p) =>
  existsSync(p),
);

describe(
  "ttrpc against containerd-shim-runc-v2 (Go ttrpc)",
  { skip: shimBinary === undefined ? "containerd-shim-runc-v2 not installed" : false },
  () => {
    test(
      "Connect, State, unknown method and Shutdown round trip with a real Go ttrpc server",
      { timeout: 60_000 },
      async () => {
        const work = await mkdtemp(join(tmpdir(), "berth-ttrpc-shim-"));
        const bundle = join(work, "bundle");
        mkdirSync(bundle);
        writeFileSync(join(bundle, "config.json"), JSON.stringify({ ociVersion: "1.0.2", annotations: {} }));
        // The shim writes its log to a fifo named "log" in the bundle; somebody must read it.
        assert.equal(spawnSync("mkfifo", [join(bundle, "log")]).status, 0);
        const logReader: ChildProcess = spawn("cat", [join(bundle, "log")], { stdio: ["ignore", "pipe", "ignore"] });
        let shimLog = "";
        logReader.stdout!.on("data", (c: Buffer) => (shimLog += c.toString()));
        const ns = `berth-test-${process.pid}`;
        const id = `t${Date.now()}`;
        let shimPid = 0;
        let address = "";
        let conn: TtrpcClient | undefined;
        try {
          const start = spawnSync(
            shimBinary!,
            [
              "-namespace",
              ns,
              "-address",
              join(work, "containerd.sock"),
              "-publish-binary",
              "/bin/true",
              "-id",
              id,
              "start",
            ],
            {
              cwd: bundle,
              env: { ...process.env, TTRPC_ADDRESS: join(work, "ttrpc.sock") },
              encoding: "utf8",
              timeout: 20_000,
            },
          );
          assert.equal(start.status, 0, `shim start failed: ${start.stderr}`);
          address = start.stdout.trim();
          assert.match(address, /^unix:\/\/\//);

          conn = await TtrpcClient.connect(address);
          const closed = new Promise<Error | undefined>((r) => conn!.once("close", r));
          const md = { "containerd-namespace-ttrpc": ns };
          const svc = "containerd.task.v2.Task";

          // Connect {id=1}: answers ConnectResponse {shim_pid=1, task_pid=2}.
          const connectResp = await conn.call(svc, "Connect", fieldString(1, "nope"), {
            metadata: md,
            timeoutMs: 10_000,
          });
          shimPid = readVarintField(connectResp, 1);
          assert.ok(shimPid > 0);
          assert.match(readFileSync(`/proc/${shimPid}/cmdline`, "utf8"), /containerd-shim-runc-v2/);

          // State {id=1} for a task that does not exist: Go maps errdefs.ErrNotFound to NotFound.
          await assert.rejects(
            conn.call(svc, "State", fieldString(1, "nope"), { metadata: md, timeoutMs: 10_000 }),
            (err: Error) => {
              assert.ok(err instanceof NotFoundError, `got ${err.name}: ${err.message}`);
              return true;
            },
          );
          // Many at once, multiplexed on one connection with a Go peer.
          const many = await Promise.allSettled(
            Array.from({ length: 200 }, () => conn!.call(svc, "State", fieldString(1, "nope"), { metadata: md })),
          );
          assert.ok(many.every((r) => r.status === "rejected" && r.reason instanceof NotFoundError));
          // Go ttrpc's own Unimplemented answer.
          await assert.rejects(conn.call(svc, "NoSuchMethod", new Uint8Array(), { metadata: md }), UnimplementedError);
          await assert.rejects(
            conn.call("no.such.Service", "X", new Uint8Array(), { metadata: md }),
            UnimplementedError,
          );

          // Shutdown {id=1, now=2}: the shim has no tasks, so it exits and the connection closes.
          await conn
            .call(svc, "Shutdown", Buffer.concat([fieldString(1, "nope"), Buffer.from([0x10, 0x01])]), { metadata: md })
            .catch((err: Error) => {
              // The shim may exit before its answer is flushed; then the call fails as the connection drops.
              assert.ok(err instanceof UnavailableError, `unexpected ${err.name}: ${err.message}`);
            });
          assert.ok((await closed) instanceof UnavailableError);
          assert.equal(conn.closed, true);
        } catch (err) {
          (err as Error).message += `\nshim log:\n${shimLog}`;
          throw err;
        } finally {
          conn?.close();
          if (shimPid > 0 && processAlive(shimPid)) {
            await waitFor(() => !processAlive(shimPid), 5000);
            if (processAlive(shimPid)) process.kill(shimPid, "SIGKILL");
          }
          logReader.kill();
          if (address) await rm(address.replace(/^unix:\/\//, ""), { force: true });
          await rm(work, { recursive: true, force: true });
        }
      },
    );
  },
);

function fieldString(field: number, value: string): Buffer {
  const v = Buffer.from(value);
  assert.ok(v.length < 128);
  return Buffer.concat([Buffer.from([(field << 3) | 2, v.length]), v]);
}

/** Reads a varint field from a protobuf message (enough for small hand-checked messages). */
function readVarintField(buf: Buffer, field: number): number {
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
    const wire = tag & 7;
    if (wire === 0) {
      const v = varint();
      if (tag >>> 3 === field) return v;
    } else if (wire === 2) pos += varint();
    else throw new Error(`unexpected wire type ${wire}`);
  }
  return 0;
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
