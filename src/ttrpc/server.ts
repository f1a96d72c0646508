// ttrpc server on a filesystem unix socket, wire-compatible with containerd/ttrpc (Go):
// requests are dispatched by full service name and method name, answered with a
// ttrpc.Response carrying a gRPC status, many calls in flight per connection.
import { chmod, lstat, mkdtemp, rename, rmdir, stat, unlink } from "node:fs/promises";
import { once } from "node:events";
import net from "node:net";
import { basename, dirname, join } from "node:path";

import { Request, Response } from "../gen/ttrpc/request.js";
import {
  AlreadyExistsError,
  DeadlineExceededError,
  FailedPreconditionError,
  GrpcCode,
  InvalidArgumentError,
  UnavailableError,
  statusCodeOf,
} from "../util/errors.js";
import {
  type Metadata,
  type MethodDefinition,
  type RequestOf,
  type ResponseOf,
  type ServiceDefinition,
  metadataFromKeyValues,
  socketPath,
} from "./definition.js";
import { DEFAULT_MAX_MESSAGE_SIZE, Flags, type FrameHeader, FrameParser, MessageType, encodeFrame } from "./frame.js";
import { MessageQueue } from "./queue.js";

/** What a handler gets besides its request. */
export interface CallContext {
  /** Full service name and method name as sent by the client. */
  service: string;
  method: string;
  /** Request metadata, keys lower-case (containerd's namespace: `containerd-namespace-ttrpc`). */
  metadata: Metadata;
  /**
   * Aborted when the client's deadline (timeout_nano) passes (reason: DeadlineExceededError),
   * when the connection goes away or the server is force-closed (reason: UnavailableError).
   */
  signal: AbortSignal;
  /** Absolute deadline in ms since the epoch, when the client sent one. */
  deadline: number | undefined;
}

type Awaitable<T> = T | Promise<T>;

/** Handler shapes by streaming kind: unary, client-, server- and bidirectional streaming. */
export type MethodImplementation<M> = M extends { requestStream: true }
  ? M extends { responseStream: true }
    ? (requests: AsyncIterable<RequestOf<M>>, ctx: CallContext) => AsyncIterable<ResponseOf<M>>
    : (requests: AsyncIterable<RequestOf<M>>, ctx: CallContext) => Awaitable<ResponseOf<M>>
  : M extends { responseStream: true }
    ? (request: RequestOf<M>, ctx: CallContext) => AsyncIterable<ResponseOf<M>>
    : (request: RequestOf<M>, ctx: CallContext) => Awaitable<ResponseOf<M>>;

/** Methods left out answer Unimplemented. */
export type ServiceImplementation<D extends ServiceDefinition> = {
  [K in keyof D["methods"]]?: MethodImplementation<D["methods"][K]>;
};

export interface ServerLogger {
  warn(obj: Record<string, unknown>, msg: string): void;
}

export interface ServerOptions {
  /** Largest payload accepted or sent, in bytes (default 4 MiB, Go ttrpc's fixed limit). */
  maxMessageSize?: number;
  /** Connections beyond this are closed on accept (default 1024). */
  maxConnections?: number;
  /**
   * Calls in flight per connection before the server stops reading from it; reading resumes
   * as calls finish, so a flood of requests queues in the socket instead of in memory (default 1024).
   */
  maxConcurrentCalls?: number;
  /** Messages buffered for a streaming handler that is not reading them before the stream fails (default 256). */
  maxStreamBuffer?: number;
  logger?: ServerLogger;
}

export interface ListenOptions {
  /** Permission bits of the socket file (default 0o600). Applied before the path becomes visible. */
  mode?: number;
  backlog?: number;
}

export interface CloseOptions {
  /** How long in-flight calls may take to finish before they are aborted and connections cut (default 10 s). */
  timeoutMs?: number;
}

interface RegisteredMethod {
  def: MethodDefinition;
  impl: (...args: never[]) => unknown;
}

interface ErrorStatus {
  code: number;
  message: string;
}

const noopLogger: ServerLogger = { warn() {} };

export class TtrpcServer {
  private readonly services = new Map<string, Map<string, RegisteredMethod>>();
  private readonly connections = new Set<ServerConnection>();
  private readonly netServer: net.Server;
  private listening: { path: string; ino: number } | undefined;
  private closing: Promise<void> | undefined;
  readonly maxMessageSize: number;
  readonly maxConcurrentCalls: number;
  readonly maxStreamBuffer: number;
  readonly logger: ServerLogger;

  constructor(opts: ServerOptions = {}) {
    this.maxMessageSize = opts.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE;
    this.maxConcurrentCalls = opts.maxConcurrentCalls ?? 1024;
    this.maxStreamBuffer = opts.maxStreamBuffer ?? 256;
    this.logger = opts.logger ?? noopLogger;
    this.netServer = net.createServer({ allowHalfOpen: false, pauseOnConnect: false }, (socket) => this.accept(socket));
    this.netServer.maxConnections = opts.maxConnections ?? 1024;
    this.netServer.on("error", (err) => this.logger.warn({ err }, "ttrpc: server socket error"));
  }

  /** Adds a service; `impl` holds handlers under the definition's camelCase method names. */
  register<D extends ServiceDefinition>(service: D, impl: ServiceImplementation<D>): this {
    if (this.services.has(service.fullName)) {
      throw new AlreadyExistsError(`ttrpc: service ${service.fullName} is already registered`);
    }
    const methods = new Map<string, RegisteredMethod>();
    for (const [camel, def] of Object.entries(service.methods)) {
      const fn = (impl as Record<string, unknown>)[camel];
      if (typeof fn === "function") methods.set(def.name, { def, impl: fn.bind(impl) as RegisteredMethod["impl"] });
    }
    this.services.set(service.fullName, methods);
    return this;
  }

  /** Listens on a filesystem unix socket (a `unix://` prefix is accepted; abstract sockets are refused). */
  async listen(address: string, opts: ListenOptions = {}): Promise<void> {
    if (this.listening || this.closing) throw new FailedPreconditionError("ttrpc: server already listening or closed");
    const path = socketPath(address);
    const mode = opts.mode ?? 0o600;
    await removeStaleSocket(path);
    // Bind inside a fresh 0700 directory, fix the mode, then rename into place: the socket
    // is never reachable at `path` with looser permissions than asked for.
    const tmpDir = await mkdtemp(join(dirname(path), `.ttrpc-${basename(path).slice(0, 8)}-`));
    const tmpSock = join(tmpDir, "s");
    try {
      if (Buffer.byteLength(tmpSock) > 107) {
        // sun_path is 108 bytes; a long target leaves no room for the detour.
        await rmdir(tmpDir).catch(() => {});
        await this.bind(path, opts.backlog);
        await chmod(path, mode);
      } else {
        await this.bind(tmpSock, opts.backlog);
        await chmod(tmpSock, mode);
        await rename(tmpSock, path);
        await rmdir(tmpDir);
      }
    } catch (err) {
      this.netServer.close();
      await unlink(tmpSock).catch(() => {});
      await rmdir(tmpDir).catch(() => {});
      throw err;
    }
    this.listening = { path, ino: (await stat(path)).ino };
  }

  private bind(path: string, backlog: number | undefined): Promise<void> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      this.netServer.once("error", onError);
      this.netServer.listen({ path, backlog }, () => {
        this.netServer.off("error", onError);
        resolve();
      });
    });
  }

  /** The socket path being served, once listening. */
  /** Open client connections (a shim with none and no tasks is idle). */
  get connectionCount(): number {
    return this.connections.size;
  }

  get path(): string | undefined {
    return this.listening?.path;
  }

  /** Serves an already-connected socket (e.g. one end of a socketpair). */
  serveSocket(socket: net.Socket): void {
    this.accept(socket);
  }

  /**
   * Stops accepting, lets in-flight calls finish (up to `timeoutMs`), then cuts what is left.
   * Requests arriving meanwhile are answered Unavailable. Do not await this from inside a
   * handler: the handler's own call is one of those being waited for.
   */
  close(opts: CloseOptions = {}): Promise<void> {
    if (this.closing) return this.closing;
    const timeoutMs = opts.timeoutMs ?? 10_000;
    this.closing = (async () => {
      const stopped = new Promise<void>((resolve) => this.netServer.close(() => resolve()));
      for (const c of this.connections) c.drain();
      const drained = Promise.all([...this.connections].map((c) => c.closed));
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, timeoutMs);
      });
      await Promise.race([drained, timedOut]);
      clearTimeout(timer);
      for (const c of this.connections) c.destroy(new UnavailableError("ttrpc: server closed"));
      await stopped;
      await this.removeSocketFile();
    })();
    return this.closing;
  }

  private async removeSocketFile(): Promise<void> {
    const l = this.listening;
    if (!l) return;
    // Only remove the file if it is still ours (a successor may already have replaced it).
    const st = await stat(l.path).catch(() => undefined);
    if (st && st.ino === l.ino) await unlink(l.path).catch(() => {});
  }

  private accept(socket: net.Socket): void {
    if (this.closing) {
      socket.destroy();
      return;
    }
    const conn = new ServerConnection(this, socket);
    this.connections.add(conn);
    void conn.closed.then(() => this.connections.delete(conn));
  }

  /** @internal */
  lookup(service: string, method: string): RegisteredMethod | ErrorStatus {
    const svc = this.services.get(service);
    if (!svc) return { code: GrpcCode.UNIMPLEMENTED, message: `ttrpc: unknown service ${service}` };
    const m = svc.get(method);
    if (!m) return { code: GrpcCode.UNIMPLEMENTED, message: `ttrpc: unknown method ${method} of service ${service}` };
    return m;
  }

  /** @internal */
  get isClosing(): boolean {
    return this.closing !== undefined;
  }
}

/** Removes a socket file left by a dead server; refuses to touch a live one or a non-socket. */
async function removeStaleSocket(path: string): Promise<void> {
  const st = await lstat(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT") return undefined;
    throw err;
  });
  if (!st) return;
  if (!st.isSocket()) throw new AlreadyExistsError(`ttrpc: ${path} exists and is not a socket`);
  const live = await new Promise<boolean>((resolve) => {
    const s = net.connect({ path });
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
  if (live) throw new AlreadyExistsError(`ttrpc: ${path} is in use by another server`);
  await unlink(path).catch(() => {});
}

interface ActiveCall {
  controller: LazyAbort;
  timer: NodeJS.Timeout | undefined;
  /** Client-to-server messages of a streaming-request call. */
  inbox: MessageQueue<unknown> | undefined;
  def: MethodDefinition;
}

/** One accepted connection: its own frame parser, stream-id bookkeeping and in-flight calls. */
class ServerConnection {
  private readonly parser: FrameParser;
  private readonly calls = new Map<number, ActiveCall>();
  private lastStreamId = 0;
  private draining = false;
  private dead = false;
  private paused = false;
  private corked = false;
  readonly closed: Promise<void>;

  constructor(
    private readonly server: TtrpcServer,
    private readonly socket: net.Socket,
  ) {
    this.parser = new FrameParser(
      {
        frame: (h, p) => this.onFrame(h, p),
        oversized: (h, limit) =>
          this.sendStatus(h.streamId, {
            code: GrpcCode.RESOURCE_EXHAUSTED,
            message: `ttrpc: message length ${h.length} exceeds maximum message size of ${limit}`,
          }),
      },
      server.maxMessageSize,
    );
    this.closed = new Promise((resolve) => socket.once("close", () => resolve()));
    socket.on("data", (chunk: Buffer) => this.parser.push(chunk));
    socket.on("drain", () => this.updateFlow());
    socket.on("error", (err: NodeJS.ErrnoException) => {
      // A client going away mid-write is routine; anything else is worth a line.
      if (err.code !== "ECONNRESET" && err.code !== "EPIPE")
        this.server.logger.warn({ err }, "ttrpc: connection error");
    });
    socket.on("close", () => this.teardown(new UnavailableError("ttrpc: connection closed")));
  }

  /** Graceful close: finish what is in flight, then end the connection. */
  drain(): void {
    this.draining = true;
    if (this.calls.size === 0) this.socket.end();
  }

  destroy(reason: Error): void {
    this.teardown(reason);
    this.socket.destroy();
  }

  private teardown(reason: Error): void {
    if (this.dead) return;
    this.dead = true;
    this.parser.stop();
    for (const call of this.calls.values()) {
      clearTimeout(call.timer);
      call.inbox?.fail(reason);
      call.controller.abort(reason);
    }
    this.calls.clear();
  }

  /** A peer that breaks the framing protocol gets its connection dropped; others are unaffected. */
  private protocolError(message: string): void {
    this.server.logger.warn({ reason: message }, "ttrpc: dropping connection after protocol error");
    this.destroy(new UnavailableError(`ttrpc: ${message}`));
  }

  private onFrame(h: FrameHeader, payload: Buffer): void {
    if (this.dead) return;
    if (h.streamId % 2 !== 1) {
      this.sendStatus(h.streamId, {
        code: GrpcCode.INVALID_ARGUMENT,
        message: "ttrpc: stream id must be odd for client initiated streams",
      });
      return;
    }
    switch (h.type) {
      case MessageType.REQUEST:
        this.onRequest(h, payload);
        return;
      case MessageType.DATA:
        this.onData(h, payload);
        return;
      default:
        this.protocolError(`unexpected message type ${h.type} on stream ${h.streamId}`);
    }
  }

  private onRequest(h: FrameHeader, payload: Buffer): void {
    const id = h.streamId;
    if (id <= this.lastStreamId) {
      this.sendStatus(id, {
        code: GrpcCode.INVALID_ARGUMENT,
        message: "ttrpc: stream id cannot be reused and must increase",
      });
      return;
    }
    this.lastStreamId = id;
    let req: Request;
    try {
      req = Request.decode(payload);
    } catch (err) {
      this.protocolError(`undecodable request on stream ${id}: ${(err as Error).message}`);
      return;
    }
    if (this.draining || this.server.isClosing) {
      this.sendStatus(id, { code: GrpcCode.UNAVAILABLE, message: "ttrpc: server is shutting down" });
      return;
    }
    const found = this.server.lookup(req.service, req.method);
    if (!("def" in found)) {
      this.sendStatus(id, found);
      return;
    }
    const { def, impl } = found;

    const controller = new LazyAbort();
    let deadline: number | undefined;
    let timer: NodeJS.Timeout | undefined;
    if (req.timeoutNano !== 0n) {
      const ms = Number(req.timeoutNano / 1_000_000n);
      if (ms <= 0) {
        this.sendStatus(id, {
          code: GrpcCode.DEADLINE_EXCEEDED,
          message: "ttrpc: deadline exceeded before the call started",
        });
        return;
      }
      deadline = Date.now() + ms;
      // setTimeout caps at ~24.8 days; a longer deadline is as good as none.
      if (ms < 2 ** 31) {
        timer = setTimeout(
          () =>
            controller.abort(
              new DeadlineExceededError(`ttrpc: deadline of ${ms}ms exceeded for ${req.service}/${req.method}`),
            ),
          ms,
        );
      }
    }

    let first: unknown;
    try {
      first = req.payload.length > 0 || !def.requestStream ? def.requestType.decode(req.payload) : undefined;
    } catch (err) {
      clearTimeout(timer);
      this.sendStatus(id, {
        code: GrpcCode.INVALID_ARGUMENT,
        message: `ttrpc: cannot decode ${req.service}/${req.method} request: ${(err as Error).message}`,
      });
      return;
    }

    let inbox: MessageQueue<unknown> | undefined;
    if (def.requestStream) {
      inbox = new MessageQueue();
      if (first !== undefined) inbox.push(first);
      // A request without "remote open" means the client sends nothing more.
      if ((h.flags & Flags.REMOTE_OPEN) === 0) inbox.end();
    }
    const call: ActiveCall = { controller, timer, inbox, def };
    this.calls.set(id, call);
    this.updateFlow();

    const ctx: CallContext = {
      service: req.service,
      method: req.method,
      metadata: metadataFromKeyValues(req.metadata),
      // Most handlers never look at their signal, and creating one costs more than the rest of a call.
      get signal() {
        return controller.signal;
      },
      deadline,
    };
    void this.run(id, call, impl, def.requestStream ? inbox : first, ctx);
  }

  private async run(
    id: number,
    call: ActiveCall,
    impl: RegisteredMethod["impl"],
    input: unknown,
    ctx: CallContext,
  ): Promise<void> {
    const { def, controller } = call;
    try {
      const out = (impl as (input: unknown, ctx: CallContext) => unknown)(input, ctx);
      if (def.responseStream) {
        for await (const msg of out as AsyncIterable<unknown>) {
          if (!this.calls.has(id)) return;
          const bytes = def.responseType.encode(msg).finish();
          if (bytes.length > this.server.maxMessageSize)
            throw oversizedResponse(ctx, bytes.length, this.server.maxMessageSize);
          // An empty message is still a message: Go peers send it as data with no flags too.
          this.send(encodeFrame(id, MessageType.DATA, 0, bytes));
          // A handler can produce faster than the client reads; wait rather than buffer without bound.
          if (this.socket.writableNeedDrain) {
            await Promise.race([once(this.socket, "drain").catch(() => {}), this.closed]);
          }
        }
        if (!this.calls.has(id)) return;
        this.send(encodeFrame(id, MessageType.DATA, Flags.REMOTE_CLOSED | Flags.NO_DATA, Buffer.alloc(0)));
      } else {
        const result = await out;
        if (!this.calls.has(id)) return;
        const bytes = def.responseType.encode(result).finish();
        const frame = Response.encode({
          status: { code: GrpcCode.OK, message: "", details: [] },
          payload: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength),
        }).finish();
        if (frame.length > this.server.maxMessageSize)
          throw oversizedResponse(ctx, frame.length, this.server.maxMessageSize);
        this.send(encodeFrame(id, MessageType.RESPONSE, 0, frame));
      }
    } catch (err) {
      if (this.calls.has(id)) this.sendStatus(id, statusOfError(err, controller));
    } finally {
      this.finishCall(id);
    }
  }

  private finishCall(id: number): void {
    const call = this.calls.get(id);
    if (!call) return;
    clearTimeout(call.timer);
    call.inbox?.end();
    this.calls.delete(id);
    this.updateFlow();
    if (this.draining && this.calls.size === 0) this.socket.end();
  }

  private onData(h: FrameHeader, payload: Buffer): void {
    const call = this.calls.get(h.streamId);
    const inbox = call?.inbox;
    if (!call || !inbox || inbox.done) {
      this.sendStatus(h.streamId, {
        code: GrpcCode.INVALID_ARGUMENT,
        message: `ttrpc: stream ${h.streamId} is not open for data`,
      });
      return;
    }
    if ((h.flags & Flags.NO_DATA) === 0) {
      let msg: unknown;
      try {
        msg = call.def.requestType.decode(payload);
      } catch (err) {
        this.failCall(h.streamId, {
          code: GrpcCode.INVALID_ARGUMENT,
          message: `ttrpc: cannot decode stream message: ${(err as Error).message}`,
        });
        return;
      }
      if (inbox.size >= this.server.maxStreamBuffer) {
        this.failCall(h.streamId, { code: GrpcCode.RESOURCE_EXHAUSTED, message: "ttrpc: stream receive buffer full" });
        return;
      }
      inbox.push(msg);
    }
    if ((h.flags & Flags.REMOTE_CLOSED) !== 0) inbox.end();
  }

  /** Ends a call early with an error status (its handler is aborted and its output dropped). */
  private failCall(id: number, status: ErrorStatus): void {
    const call = this.calls.get(id);
    if (!call) return;
    this.sendStatus(id, status);
    const reason = new InvalidArgumentError(status.message);
    call.inbox?.fail(reason);
    call.controller.abort(reason);
    this.finishCall(id);
  }

  private sendStatus(id: number, status: ErrorStatus): void {
    const frame = Response.encode({
      status: { code: status.code, message: status.message, details: [] },
      payload: Buffer.alloc(0),
    }).finish();
    this.send(encodeFrame(id, MessageType.RESPONSE, 0, frame));
  }

  private send(frame: Buffer): void {
    if (this.dead || this.socket.destroyed || this.socket.writableEnded) return;
    // Coalesce the frames written in one tick into a single writev.
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(() => {
        this.corked = false;
        this.socket.uncork();
      });
    }
    this.socket.write(frame);
    this.updateFlow();
  }

  /** Stop reading while too many calls are in flight or the client is not taking our answers. */
  private updateFlow(): void {
    if (this.dead) return;
    const stop = this.calls.size >= this.server.maxConcurrentCalls || this.socket.writableNeedDrain;
    if (stop && !this.paused) {
      this.paused = true;
      this.socket.pause();
    } else if (!stop && this.paused) {
      this.paused = false;
      this.socket.resume();
    }
  }
}

function oversizedResponse(ctx: CallContext, length: number, limit: number): Error {
  return Object.assign(
    new Error(
      `ttrpc: response of ${ctx.service}/${ctx.method} is ${length} bytes, over the maximum message size of ${limit}`,
    ),
    { grpcCode: GrpcCode.RESOURCE_EXHAUSTED },
  );
}

/** An AbortController made only when someone asks for its signal. */
class LazyAbort {
  private controller: AbortController | undefined;
  private abortedWith: { reason: unknown } | undefined;

  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.abortedWith) this.controller.abort(this.abortedWith.reason);
    }
    return this.controller.signal;
  }

  get aborted(): boolean {
    return this.abortedWith !== undefined;
  }

  get reason(): unknown {
    return this.abortedWith?.reason;
  }

  abort(reason: unknown): void {
    if (this.abortedWith) return;
    this.abortedWith = { reason };
    this.controller?.abort(reason);
  }
}

function statusOfError(err: unknown, signal: { aborted: boolean; reason: unknown }): ErrorStatus {
  // A handler that passes its signal on (timers, fetch, child processes) gets a generic
  // AbortError back; report why the signal fired instead.
  const abortLike = err instanceof Error && (err.name === "AbortError" || err.name === "TimeoutError");
  const source = signal.aborted && abortLike ? signal.reason : err;
  let code = statusCodeOf(source);
  if (code === GrpcCode.OK) code = GrpcCode.UNKNOWN;
  const message = source instanceof Error ? source.message : String(source);
  return { code, message };
}
