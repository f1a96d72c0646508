// ttrpc test fixtures: a test service on real generated codecs, a raw frame-level peer, and a
// server on a fresh socket per test.
import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before } from "node:test";
import assert from "node:assert/strict";
import { KeyValue, Request, StringList } from "../../src/gen/ttrpc/request.js";
import { NotFoundError } from "../../src/util/errors.js";
import {
  type CallContext,
  FrameParser,
  type FrameHeader,
  MessageType,
  TtrpcServer,
  encodeFrame,
} from "../../src/ttrpc/index.js";

// A test service in the shape ts-proto generates (`XDefinition`), built on real generated codecs.
export const TestDefinition = {
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

export interface Observed {
  echoCalls: number;
  hangAborted: Promise<unknown>;
  hangStarted: Promise<void>;
}

export function startTestServer(server: TtrpcServer): Observed {
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
export class RawPeer {
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

export function echoBytes(key: string, value: string): Uint8Array {
  return KeyValue.encode({ key, value }).finish();
}

/** The test file's directory for sockets, made before its tests and removed after them. */
export let dir: string;
export function useSocketDir(): void {
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "berth-ttrpc-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });
}

let seq = 0;
export async function withServer(
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
