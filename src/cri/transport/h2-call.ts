// One gRPC call on an HTTP/2 request stream (call-stream.ts), as the handlers of cri/server.ts
// implementService see it: the subset of grpc-js's ServerUnaryCall / ServerReadableStream / ServerWritableStream
// that berth uses (request, metadata, cancelled + 'cancelled', write/'drain'/end, an 'error'
// event carrying the status, and for client streams a Readable of the requests).
//
// CallCore owns the stream's response side: it sends headers, messages and the status once,
// runs the deadline and turns the stream's early close (client cancel, RST_STREAM, connection
// loss) into cancellation. It is also the stream's sink: request data, end and drain go to the
// facade's hooks (one each, no listeners). The facades hold one core each.

import { Metadata, status as Code } from "@grpc/grpc-js";
import { EventEmitter } from "node:events";
import { Readable } from "node:stream";
import { gunzipSync } from "node:zlib";
import type { CallStream, CallStreamSink, RequestHeaders } from "./call-stream.js";
import { encodeMessage, MessageReader, MessageTooLargeError, type RawMessage } from "./grpc-frame.js";
import type { Clear, Deadlines } from "./deadlines.js";

/** What a call needs to know of its method and server. */
export interface CallSetup {
  stream: CallStream;
  /** Milliseconds from now, or undefined for none. */
  timeoutMs: number | undefined;
  deadlines: Deadlines;
  /** The request's grpc-encoding when it is gzip; messages with the compressed flag need it. */
  gzip: boolean;
  maxRecv: number;
  maxSend: number;
  deserialize: (b: Buffer) => unknown;
  serialize: (v: unknown) => Buffer;
}

/** A status as the wrapper hands it over (grpc-js's ServerErrorResponse shape). */
export interface StatusLike {
  code?: number;
  details?: string;
  message?: string;
  metadata?: Metadata;
}

/** Request headers that are the transport's, not the caller's metadata (as grpc-js drops them). */
const TRANSPORT_HEADERS = ["content-type", "te", "grpc-timeout", "grpc-encoding", "grpc-accept-encoding"];

export function metadataOf(headers: RequestHeaders): Metadata {
  const md = Metadata.fromHttp2Headers(headers);
  for (const h of TRANSPORT_HEADERS) md.remove(h);
  return md;
}

/** The response side of one call. `onCancel` runs once if the call ends before its status was sent. */
export class CallCore implements CallStreamSink {
  /** The status went out (or the call was cut off): nothing more is sent. */
  done = false;
  cancelled = false;
  private readonly clearDeadline: Clear | undefined;
  readonly deadlineAt: number;
  onCancel: (() => void) | undefined;
  /** The facade's hooks for the request side and for drain. */
  onData: ((chunk: Buffer) => void) | undefined;
  onEnd: (() => void) | undefined;
  onDrain: (() => void) | undefined;

  constructor(readonly setup: CallSetup) {
    const { timeoutMs } = setup;
    this.deadlineAt = timeoutMs === undefined ? Infinity : performance.now() + timeoutMs;
    if (timeoutMs !== undefined) this.clearDeadline = setup.deadlines.watch(this, timeoutMs);
  }

  /** Starts the stream's events; the facade sets its hooks first. */
  attach(): void {
    this.setup.stream.attach(this);
  }

  get headers(): RequestHeaders {
    return this.setup.stream.headers;
  }

  data(chunk: Buffer): void {
    if (!this.done) this.onData?.(chunk);
  }

  end(): void {
    if (!this.done) this.onEnd?.();
  }

  /** The stream went away early (client cancel, RST_STREAM, connection loss). */
  close(): void {
    this.clearDeadline?.();
    if (!this.done) this.cancel();
  }

  drain(): void {
    this.onDrain?.();
  }

  /** The deadline passed (Deadlines calls this). */
  expire(): void {
    if (this.done) return;
    this.sendStatus(Code.DEADLINE_EXCEEDED, "Deadline exceeded");
    this.cancel();
  }

  private cancel(): void {
    this.done = true;
    if (this.cancelled) return;
    this.cancelled = true;
    this.onCancel?.();
  }

  /** Decodes one message (decompressing it if flagged); null after it ended the call with an error. */
  decode(m: RawMessage): unknown {
    let bytes = m.payload;
    try {
      if (m.compressed) {
        if (!this.setup.gzip) {
          this.fail(Code.INTERNAL, "Compressed message received without a grpc-encoding");
          return null;
        }
        bytes = gunzipSync(bytes, { maxOutputLength: this.setup.maxRecv + 1 });
        if (bytes.length > this.setup.maxRecv) throw new MessageTooLargeError(bytes.length, this.setup.maxRecv);
      }
    } catch (err) {
      if (err instanceof MessageTooLargeError) this.fail(Code.RESOURCE_EXHAUSTED, err.message);
      else if ((err as { code?: string }).code === "ERR_BUFFER_TOO_LARGE")
        this.fail(Code.RESOURCE_EXHAUSTED, `Received message larger than max (more than ${this.setup.maxRecv})`);
      else this.fail(Code.INTERNAL, `Error decompressing request: ${(err as Error).message}`);
      return null;
    }
    try {
      return this.setup.deserialize(bytes);
    } catch (err) {
      this.fail(Code.INTERNAL, `Error deserializing request: ${(err as Error).message}`);
      return null;
    }
  }

  /** A reader of this call's request messages with the receive limit. */
  reader(): MessageReader {
    return new MessageReader(this.setup.maxRecv);
  }

  /**
   * The whole request messages `chunk` completes in `reader`; undefined (and the call failed:
   * RESOURCE_EXHAUSTED past the receive limit, else INTERNAL) when the framing is broken.
   */
  messages(reader: MessageReader, chunk: Buffer): RawMessage[] | undefined {
    try {
      return reader.push(chunk);
    } catch (err) {
      this.fail(err instanceof MessageTooLargeError ? Code.RESOURCE_EXHAUSTED : Code.INTERNAL, (err as Error).message);
      return undefined;
    }
  }

  /** Ends the call with an error status the server itself found, and cancels what runs. */
  fail(code: number, message: string): void {
    if (this.done) return;
    this.sendStatus(code, message);
    this.cancel();
  }

  /** Serializes and frames a response message; undefined (and the call failed) when it cannot be sent. */
  frame(value: unknown): Buffer | undefined {
    let bytes: Buffer;
    try {
      bytes = this.setup.serialize(value);
    } catch (err) {
      this.fail(Code.INTERNAL, `Error serializing response: ${(err as Error).message}`);
      return undefined;
    }
    if (bytes.length > this.setup.maxSend) {
      this.fail(Code.RESOURCE_EXHAUSTED, `Sent message larger than max (${bytes.length} vs. ${this.setup.maxSend})`);
      return undefined;
    }
    return encodeMessage(bytes);
  }

  /** Sends one framed message (server streaming); false when the stream wants a 'drain' first. */
  write(framed: Buffer): boolean {
    if (this.done) return false;
    return this.setup.stream.write(framed);
  }

  /** A unary answer: headers, the message and OK trailers (one write on berth's connection). */
  sendMessageAndOk(value: unknown): void {
    if (this.done) return;
    const framed = this.frame(value);
    if (framed === undefined) return;
    this.done = true;
    this.clearDeadline?.();
    this.setup.stream.finish(framed, Code.OK, "");
  }

  /** Ends the call with a status: in the trailers after messages, else trailers-only. */
  sendStatus(code: number, message: string, metadata?: Metadata): void {
    if (this.done) return;
    this.done = true;
    this.clearDeadline?.();
    this.setup.stream.finish(undefined, code, message, metadata);
  }

  /** The status of a handler's error (the wrapper's toGrpcStatus shape, or anything thrown). */
  sendError(err: StatusLike | null | undefined): void {
    const code = typeof err?.code === "number" ? err.code : Code.UNKNOWN;
    this.sendStatus(
      code === Code.OK ? Code.UNKNOWN : code,
      err?.details ?? err?.message ?? "unknown error",
      err?.metadata,
    );
  }
}

type UnaryCallback = (err: StatusLike | null | undefined, value?: unknown) => void;

/** Reads exactly one request message, then calls `run` with it. */
function readOne(core: CallCore, run: (request: unknown) => void): void {
  const reader = core.reader();
  let request: unknown;
  let count = 0;
  core.onData = (chunk: Buffer) => {
    const msgs = core.messages(reader, chunk);
    if (!msgs) return;
    for (const m of msgs) {
      if (++count > 1) return core.fail(Code.UNIMPLEMENTED, "Received a second request message for a unary call");
      request = core.decode(m);
      if (core.done) return;
    }
  };
  core.onEnd = () => {
    if (count === 0 || !reader.atBoundary) return core.fail(Code.UNIMPLEMENTED, "Received no complete request message");
    run(request);
  };
  core.attach();
}

/**
 * A unary call (grpc-js ServerUnaryCall's used subset). Not an EventEmitter: its one event is
 * 'cancelled', almost never listened to, and an emitter per call was a visible part of a read.
 */
export class H2UnaryCall {
  request: unknown = undefined;
  private md: Metadata | undefined;
  private cancelListeners: (() => void)[] | undefined;

  constructor(readonly core: CallCore) {
    core.onCancel = () => {
      const ls = this.cancelListeners;
      this.cancelListeners = undefined;
      if (ls) for (const fn of ls) fn();
    };
  }

  get cancelled(): boolean {
    return this.core.cancelled;
  }

  get metadata(): Metadata {
    return (this.md ??= metadataOf(this.core.headers));
  }

  /** 'cancelled' fires at most once, so on and once are the same. */
  once(event: "cancelled", fn: () => void): this {
    if (event === "cancelled" && !this.core.cancelled) (this.cancelListeners ??= []).push(fn);
    return this;
  }

  on(event: "cancelled", fn: () => void): this {
    return this.once(event, fn);
  }

  off(event: "cancelled", fn: () => void): this {
    const i = event === "cancelled" ? (this.cancelListeners?.indexOf(fn) ?? -1) : -1;
    if (i >= 0) this.cancelListeners!.splice(i, 1);
    return this;
  }

  listenerCount(event: string): number {
    return event === "cancelled" ? (this.cancelListeners?.length ?? 0) : 0;
  }

  /** Reads the request and runs the grpc-js style handler with it. */
  start(handler: (call: H2UnaryCall, cb: UnaryCallback) => void): void {
    readOne(this.core, (request) => {
      this.request = request;
      handler(this, (err, value) => (err ? this.core.sendError(err) : this.core.sendMessageAndOk(value)));
    });
  }
}

/** A server-streaming call (grpc-js ServerWritableStream's used subset). */
export class H2WritableCall extends EventEmitter {
  request: unknown = undefined;
  private md: Metadata | undefined;

  constructor(readonly core: CallCore) {
    super();
    core.onCancel = () => this.emit("cancelled");
    core.onDrain = () => this.emit("drain");
    // implementService reports a handler's failure as an 'error' event carrying the status.
    this.on("error", (err: StatusLike) => core.sendError(err));
  }

  get cancelled(): boolean {
    return this.core.cancelled;
  }

  get metadata(): Metadata {
    return (this.md ??= metadataOf(this.core.headers));
  }

  start(handler: (call: H2WritableCall) => void): void {
    readOne(this.core, (request) => {
      this.request = request;
      handler(this);
    });
  }

  /** Sends a message; false asks the caller to wait for 'drain' (also false once the call ended). */
  write(message: unknown): boolean {
    if (this.core.done) return false;
    const framed = this.core.frame(message);
    return framed !== undefined && this.core.write(framed);
  }

  end(): void {
    this.core.sendStatus(Code.OK, "");
  }
}

/** A client-streaming call: a Readable of the decoded requests (grpc-js ServerReadableStream's used subset). */
export class H2ReadableCall extends Readable {
  private md: Metadata | undefined;

  constructor(readonly core: CallCore) {
    super({ objectMode: true });
    // A cancel destroys this Readable with an error; a handler that stopped reading must not
    // turn that into an uncaught exception (a reader still gets it).
    this.on("error", () => {});
    core.onCancel = () => {
      this.emit("cancelled");
      if (!this.readableEnded) this.destroy(new Error("call cancelled"));
    };
  }

  get cancelled(): boolean {
    return this.core.cancelled;
  }

  get metadata(): Metadata {
    return (this.md ??= metadataOf(this.core.headers));
  }

  override _read(): void {
    this.core.setup.stream.resume();
  }

  start(handler: (call: H2ReadableCall, cb: UnaryCallback) => void): void {
    const { core } = this;
    const { stream } = core.setup;
    const reader = core.reader();
    core.onData = (chunk: Buffer) => {
      const msgs = core.messages(reader, chunk);
      if (!msgs) return;
      for (const m of msgs) {
        const value = core.decode(m);
        if (core.done) return;
        if (!this.push(value)) stream.pause();
      }
    };
    core.onEnd = () => {
      if (!reader.atBoundary) return core.fail(Code.INTERNAL, "The request stream ended inside a message");
      this.push(null);
    };
    core.attach();
    handler(this, (err, value) => (err ? core.sendError(err) : core.sendMessageAndOk(value)));
  }
}
