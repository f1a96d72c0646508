// berth's own gRPC server (src/cri/transport/grpc-server.ts, its own HTTP/2 connection) behind
// the same wrapper berthd uses (cri/server.ts implementService), on a unix socket, called by a
// real grpc-js client and, for what grpc-js clients never send, by a raw node:http2 client:
// unary calls with metadata, error statuses (percent-encoded messages, trailers-only),
// unknown methods, size limits both ways, deadlines, cancellation, server and client
// streaming, gzip requests, bad content-type / method / encoding, graceful shutdown.
import * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { connect as netConnect } from "node:net";
import { connect, type ClientHttp2Session, type IncomingHttpHeaders } from "node:http2";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { ArchiveChunk, BerthClient, LoadImagesResponse } from "../../../../src/gen/berth/v1/berth.js";
import {
  ContainerEventResponse,
  RuntimeServiceClient,
  RuntimeServiceService,
  StatusResponse,
  VersionRequest,
  VersionResponse,
} from "../../../../src/gen/cri/runtime/v1/api.js";
import { implementService, shutdownServer } from "../../../../src/cri/server.js";
import { BerthGrpcServer } from "../../../../src/cri/transport/grpc-server.js";
import { NotFoundError } from "../../../../src/util/errors.js";
import { silentLogger } from "../../../../src/util/log.js";
import { onAbort, serveForTest, versionBody } from "./fixtures.js";

const LIMIT = 64 * 1024;
type Ctx = { signal: AbortSignal; metadata: grpc.Metadata; send?: (m: unknown) => Promise<void> };

let dir = "";
let socket = "";
let stop = () => {};
let rt: RuntimeServiceClient;
let berth: BerthClient;
/** What the slow handlers saw: their signal's abort reason, once it aborted. */
let aborted: Promise<unknown> = Promise.resolve();
let handlerRan = 0;
/** Called by the slow handler once it listens for its abort. */
let slowStarted: () => void = () => {};

before(async () => {
  const runtime = {
    async version(req: VersionRequest, ctx: Ctx) {
      handlerRan++;
      if (req.version === "big-answer") return VersionResponse.fromPartial({ runtimeName: "x".repeat(LIMIT + 1) });
      if (req.version === "fail") throw new NotFoundError(`container "café" 100% not found\nsecond line`);
      if (req.version === "slow") {
        aborted = onAbort(ctx.signal);
        slowStarted();
        await aborted;
        return VersionResponse.fromPartial({});
      }
      if (req.version.startsWith("wait:")) await new Promise((r) => setTimeout(r, Number(req.version.slice(5))));
      return VersionResponse.fromPartial({
        version: req.version.length > 100 ? String(req.version.length) : req.version,
        runtimeName: String(ctx.metadata.get("x-test")[0] ?? ""),
      });
    },
    async getContainerEvents(_req: unknown, ctx: Ctx) {
      for (let i = 0; i < 50; i++) {
        await ctx.send!(ContainerEventResponse.fromPartial({ containerId: `c${i}`, createdAt: BigInt(i) }));
      }
      if (ctx.metadata.get("x-fail").length) throw new NotFoundError("stream failed after 50");
    },
  };
  const image = {
    async loadImages(requests: NodeJS.ReadableStream, _ctx: Ctx) {
      let bytes = 0;
      let count = 0;
      for await (const m of requests as AsyncIterable<ArchiveChunk>) {
        bytes += m.data.length;
        count++;
      }
      return LoadImagesResponse.fromPartial({ images: [`${count} messages`, `${bytes} bytes`] });
    },
  };
  ({ dir, socket, stop } = await serveForTest(
    "berth-h2grpc-",
    { maxRecvMessageSize: LIMIT, maxSendMessageSize: LIMIT },
    runtime,
    image,
  ));
  rt = new RuntimeServiceClient(`unix://${socket}`, grpc.credentials.createInsecure(), {
    "grpc.max_receive_message_length": 4 * LIMIT,
    "grpc.max_send_message_length": 4 * LIMIT,
  });
  berth = new BerthClient(`unix://${socket}`, grpc.credentials.createInsecure(), {
    "grpc.default_compression_algorithm": 2, // gzip
  });
});

after(async () => {
  rt?.close();
  berth?.close();
  stop();
});

function version(
  v: string,
  opts: { md?: grpc.Metadata; deadlineMs?: number; client?: RuntimeServiceClient } = {},
): Promise<VersionResponse> {
  const c = opts.client ?? rt;
  return new Promise((resolve, reject) =>
    c.version(
      VersionRequest.fromPartial({ version: v }),
      opts.md ?? new grpc.Metadata(),
      opts.deadlineMs ? { deadline: Date.now() + opts.deadlineMs } : {},
      (err, r) => (err ? reject(err) : resolve(r)),
    ),
  );
}

const withCode = (code: grpc.status, details?: RegExp | string) => (err: unknown) => {
  const e = err as grpc.ServiceError;
  assert.equal(e.code, code, `${grpc.status[e.code]}: ${e.details}`);
  if (typeof details === "string") assert.equal(e.details, details);
  else if (details) assert.match(e.details, details);
  return true;
};

test("unary: the answer, and the caller's metadata reaches the handler", async () => {
  const md = new grpc.Metadata();
  md.set("x-test", "hello");
  const r = await version("v1", { md });
  assert.equal(r.version, "v1");
  assert.equal(r.runtimeName, "hello");
});

test("a handler's error arrives with its code and its exact message (percent-encoded on the wire)", async () => {
  await assert.rejects(
    version("fail"),
    withCode(grpc.status.NOT_FOUND, `container "café" 100% not found\nsecond line`),
  );
});

test("an unknown method is UNIMPLEMENTED, naming it", async () => {
  const client = new grpc.Client(`unix://${socket}`, grpc.credentials.createInsecure());
  try {
    const err = await new Promise<grpc.ServiceError | null>((resolve) =>
      client.makeUnaryRequest(
        "/runtime.v1.RuntimeService/NoSuchMethod",
        (b: Buffer) => b,
        (b: Buffer) => b,
        Buffer.alloc(0),
        (e) => resolve(e),
      ),
    );
    withCode(grpc.status.UNIMPLEMENTED, /NoSuchMethod/)(err);
  } finally {
    client.close();
  }
});

test("a request over the receive limit is RESOURCE_EXHAUSTED and never reaches the handler", async () => {
  const before = handlerRan;
  await assert.rejects(version("y".repeat(LIMIT + 10)), withCode(grpc.status.RESOURCE_EXHAUSTED, /larger than max/));
  assert.equal(handlerRan, before);
  // The connection still serves.
  assert.equal((await version("after")).version, "after");
});

test("an answer over the send limit is RESOURCE_EXHAUSTED", async () => {
  await assert.rejects(version("big-answer"), withCode(grpc.status.RESOURCE_EXHAUSTED, /Sent message larger than max/));
});

test("a client's cancel aborts the handler's signal", async () => {
  const started = new Promise<void>((resolve) => (slowStarted = resolve));
  const call = rt.version(VersionRequest.fromPartial({ version: "slow" }), () => {});
  await started;
  call.cancel();
  assert.equal(((await aborted) as Error).message, "call cancelled by the client");
});

test("the client's deadline passing aborts the handler's signal; the client hears DEADLINE_EXCEEDED", async () => {
  const started = new Promise<void>((resolve) => (slowStarted = resolve));
  await assert.rejects(version("slow", { deadlineMs: 200 }), withCode(grpc.status.DEADLINE_EXCEEDED));
  await started;
  assert.ok((await aborted) instanceof Error);
});

test("server streaming: every message in order, then OK; a failure after messages keeps its code", async () => {
  const read = (md: grpc.Metadata) =>
    new Promise<{ ids: string[]; err?: grpc.ServiceError }>((resolve) => {
      const ids: string[] = [];
      const s = rt.getContainerEvents({}, md);
      s.on("data", (m: ContainerEventResponse) => ids.push(m.containerId));
      s.on("error", (err: grpc.ServiceError) => resolve({ ids, err }));
      s.on("end", () => resolve({ ids }));
    });
  const ok = await read(new grpc.Metadata());
  assert.deepEqual(
    ok.ids,
    Array.from({ length: 50 }, (_, i) => `c${i}`),
  );
  assert.equal(ok.err, undefined);
  const md = new grpc.Metadata();
  md.set("x-fail", "1");
  const failed = await read(md);
  assert.equal(failed.ids.length, 50);
  withCode(grpc.status.NOT_FOUND, "stream failed after 50")(failed.err);
});

test("client streaming, gzip-compressed by the client: every message reaches the handler", async () => {
  const res = await new Promise<LoadImagesResponse>((resolve, reject) => {
    const call = berth.loadImages((err, r) => (err ? reject(err) : resolve(r!)));
    for (let i = 0; i < 20; i++) call.write(ArchiveChunk.fromPartial({ data: Buffer.alloc(10_000, i) }));
    call.end();
  });
  assert.deepEqual(res.images, ["20 messages", "200000 bytes"]);
});

/** One raw HTTP/2 request; the response's headers, body and trailers. */
async function raw(
  headers: Record<string, string>,
  parts: Buffer[] | null,
): Promise<{ headers: IncomingHttpHeaders; body: Buffer; trailers: IncomingHttpHeaders }> {
  const session: ClientHttp2Session = connect("http://localhost", { createConnection: () => netConnect(socket) });
  try {
    return await new Promise((resolve, reject) => {
      const req = session.request(
        { ":method": "POST", ":path": "/runtime.v1.RuntimeService/Version", ...headers },
        { endStream: parts === null },
      );
      let h: IncomingHttpHeaders = {};
      let t: IncomingHttpHeaders = {};
      const chunks: Buffer[] = [];
      req.on("response", (x) => (h = x));
      req.on("trailers", (x) => (t = x));
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => resolve({ headers: h, body: Buffer.concat(chunks), trailers: t }));
      req.on("error", reject);
      if (parts === null) return;
      // Each part in a DATA frame of its own: the server must put a split message together.
      const write = (i: number): void => {
        if (i === parts.length) return void req.end();
        req.write(parts[i], () => setImmediate(() => write(i + 1)));
      };
      write(0);
    });
  } finally {
    session.close();
  }
}

test("raw HTTP/2: a content-type other than application/grpc is 415; GET is 405", async () => {
  const r = await raw({ "content-type": "application/json" }, [Buffer.from("{}")]);
  assert.equal(r.headers[":status"], 415);
  const g = await raw({ ":method": "GET", "content-type": "application/grpc" }, null);
  assert.equal(g.headers[":status"], 405);
});

test("raw HTTP/2: an unsupported grpc-encoding is UNIMPLEMENTED, naming the accepted ones", async () => {
  const r = await raw({ "content-type": "application/grpc", "grpc-encoding": "br" }, [versionBody("x")]);
  assert.equal(r.headers["grpc-status"], String(grpc.status.UNIMPLEMENTED));
  assert.equal(r.headers["grpc-accept-encoding"], "identity,gzip");
});

test("raw HTTP/2: the server's own grpc-timeout ends a slow call with DEADLINE_EXCEEDED in the trailers", async () => {
  const started = new Promise<void>((resolve) => (slowStarted = resolve));
  const r = await raw({ "content-type": "application/grpc", "grpc-timeout": "150m" }, [versionBody("slow")]);
  await started;
  assert.equal(r.headers[":status"], 200);
  assert.equal(r.headers["grpc-status"], String(grpc.status.DEADLINE_EXCEEDED));
  assert.equal(r.headers["grpc-message"], "Deadline exceeded");
  assert.equal(((await aborted) as Error).message, "call cancelled by the client");
});

test("raw HTTP/2: a malformed grpc-timeout is INTERNAL; a message split across DATA frames is put together", async () => {
  const bad = await raw({ "content-type": "application/grpc", "grpc-timeout": "soon" }, [versionBody("x")]);
  assert.equal(bad.headers["grpc-status"], String(grpc.status.INTERNAL));
  const ok = await raw({ "content-type": "application/grpc+proto", "grpc-timeout": "10S" }, [
    versionBody("split").subarray(0, 3),
    versionBody("split").subarray(3, 8),
    versionBody("split").subarray(8),
  ]);
  assert.equal(ok.trailers["grpc-status"], "0");
  assert.equal(VersionResponse.decode(ok.body.subarray(5)).version, "split");
});

test("graceful shutdown: an in-flight call finishes, then the shutdown completes", async () => {
  const s2 = new BerthGrpcServer({ log: silentLogger(), maxRecvMessageSize: LIMIT, maxSendMessageSize: LIMIT });
  let started: () => void = () => {};
  const running = new Promise<void>((resolve) => (started = resolve));
  const h = {
    async status() {
      started();
      await new Promise((r) => setTimeout(r, 300));
      return StatusResponse.fromPartial({});
    },
  };
  s2.addService(RuntimeServiceService, implementService(RuntimeServiceService, h, { log: silentLogger() }));
  const sock2 = join(dir, "s2.sock");
  await s2.listen(sock2);
  const c2 = new RuntimeServiceClient(`unix://${sock2}`, grpc.credentials.createInsecure());
  try {
    const inFlight = new Promise<StatusResponse>((resolve, reject) =>
      c2.status({ verbose: false }, (err, r) => (err ? reject(err) : resolve(r))),
    );
    await running;
    const how = await shutdownServer(s2, 5000);
    assert.equal(how, "graceful");
    assert.deepEqual(await inFlight, StatusResponse.fromPartial({}));
    await assert.rejects(
      new Promise((resolve, reject) =>
        c2.status({ verbose: false }, new grpc.Metadata(), { deadline: Date.now() + 2000 }, (e, r) =>
          e ? reject(e) : resolve(r),
        ),
      ),
      (err: grpc.ServiceError) => err.code === grpc.status.UNAVAILABLE || err.code === grpc.status.DEADLINE_EXCEEDED,
    );
  } finally {
    c2.close();
    s2.forceShutdown();
  }
});

test("raw HTTP/2: a keepalive PING is answered", async () => {
  const session = connect("http://localhost", { createConnection: () => netConnect(socket) });
  try {
    await new Promise((resolve) => session.once("connect", resolve));
    const payload = Buffer.from("berthpng");
    const echoed = await new Promise<Buffer>((resolve, reject) =>
      session.ping(payload, (err, _ms, p) => (err ? reject(err) : resolve(p))),
    );
    assert.deepEqual(echoed, payload);
  } finally {
    session.close();
  }
});
