// The narrow view of one HTTP/2 request stream that a gRPC call (h2-call.ts) works over. berth's
// own HTTP/2 connection (h2-server-stream.ts) implements it directly: a unary call then costs
// no Node Readable or EventEmitter, only a few method calls. Events go the other way through
// one sink object the call attaches, not through listeners.

import type { Metadata } from "@grpc/grpc-js";

/** Request headers as node:http2 hands them over: a repeated field becomes an array. */
export type RequestHeaders = Record<string, string | string[] | undefined>;

/** What the stream tells its call. */
export interface CallStreamSink {
  /** Request bytes (a DATA frame's payload, padding removed). */
  data(chunk: Buffer): void;
  /** The client ended its side (END_STREAM): no more data comes. */
  end(): void;
  /** The stream ended before the call's status went out: RST_STREAM, connection lost. */
  close(): void;
  /** A write that returned false may be followed by more now. */
  drain(): void;
}

export interface CallStream {
  readonly headers: RequestHeaders;
  /** Nothing can be sent any more (reset, connection gone, or the status went out). */
  readonly closed: boolean;
  /** Attaches the call; events before this are not lost (the stream delivers after it). */
  attach(sink: CallStreamSink): void;
  /** The response headers (first time) and one framed message; false: wait for drain(). */
  write(framed: Buffer): boolean;
  /**
   * Ends the response: headers when none went out yet, `framed` when given, then the status
   * trailers. Nothing sent before and no message: a trailers-only response. `extra` headers go
   * with the status (grpc-accept-encoding on a refused encoding). What the client still sends
   * is read and dropped.
   */
  finish(
    framed: Buffer | undefined,
    code: number,
    message: string,
    metadata?: Metadata,
    extra?: Record<string, string>,
  ): void;
  /** An HTTP error without gRPC (405, 415): that status alone, and the stream ends. */
  respondHttp(status: number): void;
  /** Stops (and restarts) delivering request data: the client's flow control holds it back. */
  pause(): void;
  resume(): void;
}
