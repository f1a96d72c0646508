// One request stream of berth's HTTP/2 server connection (h2-connection.ts), as a gRPC call sees
// it (call-stream.ts): the request's DATA goes to the call's sink (or is held while the call
// paused it: the client's stream window is then not credited, so the client stops sending);
// the response is headers, messages and the status trailers, sent through the connection's send
// flow control. A unary answer (headers + message + trailers) leaves in one socket write.

import type { Metadata } from "@grpc/grpc-js";
import type { CallStream, CallStreamSink, RequestHeaders } from "./call-stream.js";
import { statusHeaders } from "./grpc-trailers.js";
import { encodeWithoutIndexing } from "./hpack.js";

/** What a stream needs of its connection. */
export interface StreamOwner {
  /** Sends what the stream has queued as far as the windows and the socket allow. */
  flush(stream: H2ServerStream): void;
  /** `n` request bytes were consumed: the windows may be credited back to the client. */
  consumed(stream: H2ServerStream, n: number): void;
  /** True while the socket wants a 'drain' before more is written. */
  readonly blocked: boolean;
}

/** The response headers of every call, encoded once (static table, no dynamic table). */
export const RESPONSE_BLOCK = encodeWithoutIndexing([
  { name: ":status", value: "200" },
  { name: "content-type", value: "application/grpc" },
]);
/** The trailers of a call that ended OK without metadata, encoded once. */
export const OK_BLOCK = encodeWithoutIndexing([{ name: "grpc-status", value: "0" }]);

/** A status (and any metadata and extra headers) as an HPACK block. */
export function statusBlock(
  code: number,
  message: string,
  metadata?: Metadata,
  extra?: Record<string, string>,
): Buffer {
  if (code === 0 && !message && !metadata && !extra) return OK_BLOCK;
  const fields: { name: string; value: string }[] = [];
  for (const [name, v] of Object.entries(statusHeaders(code, message, metadata))) {
    if (Array.isArray(v)) for (const one of v) fields.push({ name, value: String(one) });
    else if (v !== undefined) fields.push({ name, value: String(v) });
  }
  for (const [name, value] of Object.entries(extra ?? {})) fields.push({ name, value });
  return encodeWithoutIndexing(fields);
}

export class H2ServerStream implements CallStream {
  sink: CallStreamSink | undefined;
  /** The client sent END_STREAM. */
  remoteEnded = false;
  /** The call ended the response (finish / respondHttp): nothing more is accepted from it. */
  localEnded = false;
  /** The last frame of the response went out (END_STREAM). */
  endSent = false;
  /** Removed from the connection (reset either way, or the connection is gone). */
  gone = false;
  /** Response header block not yet sent, and whether it ends the stream. */
  pendingHeaders: Buffer | undefined;
  pendingHeadersEnd = false;
  /** Response DATA bytes waiting for window or socket. */
  readonly queue: Buffer[] = [];
  queued = 0;
  /** The trailers block, sent once the queue is empty. */
  trailers: Buffer | undefined;
  /** A write returned false: drain() is owed once everything queued is out. */
  wantDrain = false;
  /** What the client may still send on this stream before our next WINDOW_UPDATE. */
  recvWindow: number;
  /** Consumed bytes not yet credited back with a WINDOW_UPDATE. */
  recvUnacked = 0;
  private headersSent = false;
  /** Delivery is held: before attach() and while the call paused. */
  private paused = true;
  private held: Buffer[] | undefined;
  private heldEnd = false;
  private delivering = false;

  constructor(
    readonly id: number,
    readonly headers: RequestHeaders,
    private readonly owner: StreamOwner,
    /** What we may still send on this stream (the client's window). */
    public sendWindow: number,
    recvWindow: number,
  ) {
    this.recvWindow = recvWindow;
  }

  get closed(): boolean {
    return this.gone || this.localEnded;
  }

  attach(sink: CallStreamSink): void {
    this.sink = sink;
    this.resume();
  }

  /** A DATA payload of the request (the connection already charged its windows). */
  onData(payload: Buffer): void {
    if (this.localEnded || this.gone) return this.owner.consumed(this, payload.length);
    if (this.paused || this.held) {
      (this.held ??= []).push(payload);
      return;
    }
    this.owner.consumed(this, payload.length);
    this.sink!.data(payload);
  }

  /** The client's END_STREAM. */
  onEnd(): void {
    this.remoteEnded = true;
    if (this.localEnded || this.gone) return;
    if (this.paused || this.held) this.heldEnd = true;
    else this.sink!.end();
  }

  /** The stream is gone (reset, connection lost): the call is told unless it ended itself. */
  onGone(): void {
    if (this.gone) return;
    this.gone = true;
    this.held = undefined;
    if (!this.localEnded) this.sink?.close();
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    if (!this.sink) return;
    this.paused = false;
    if (this.delivering) return;
    this.delivering = true;
    try {
      while (!this.paused && this.held && !this.gone && !this.localEnded) {
        const next = this.held.shift();
        if (next === undefined) {
          this.held = undefined;
          if (this.heldEnd) {
            this.heldEnd = false;
            this.sink.end();
          }
          break;
        }
        this.owner.consumed(this, next.length);
        this.sink.data(next);
      }
    } finally {
      this.delivering = false;
    }
  }

  write(framed: Buffer): boolean {
    if (this.closed) return false;
    if (!this.headersSent) {
      this.headersSent = true;
      this.pendingHeaders = RESPONSE_BLOCK;
    }
    this.queue.push(framed);
    this.queued += framed.length;
    this.owner.flush(this);
    if (this.queued === 0 && !this.owner.blocked) return true;
    this.wantDrain = true;
    return false;
  }

  finish(
    framed: Buffer | undefined,
    code: number,
    message: string,
    metadata?: Metadata,
    extra?: Record<string, string>,
  ): void {
    if (this.closed) return;
    this.localEnded = true;
    this.held = undefined;
    const status = statusBlock(code, message, metadata, extra);
    if (!this.headersSent && framed === undefined) {
      // Trailers-only: one header block with :status, content-type and the status. Blocks
      // encoded without a dynamic table can be concatenated.
      this.pendingHeaders = Buffer.concat([RESPONSE_BLOCK, status]);
      this.pendingHeadersEnd = true;
    } else {
      if (!this.headersSent) this.pendingHeaders = RESPONSE_BLOCK;
      if (framed !== undefined) {
        this.queue.push(framed);
        this.queued += framed.length;
      }
      this.trailers = status;
    }
    this.headersSent = true;
    this.owner.flush(this);
  }

  respondHttp(status: number): void {
    if (this.closed) return;
    this.localEnded = true;
    this.held = undefined;
    this.headersSent = true;
    this.pendingHeaders = encodeWithoutIndexing([{ name: ":status", value: String(status) }]);
    this.pendingHeadersEnd = true;
    this.owner.flush(this);
  }
}
