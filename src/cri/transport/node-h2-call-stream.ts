// A node:http2 server stream as the narrow CallStream a call works over (call-stream.ts), for
// the node:http2 server kind (h2-grpc-server.ts).

import type { Metadata } from "@grpc/grpc-js";
import type { OutgoingHttpHeaders, ServerHttp2Stream } from "node:http2";
import type { CallStream, CallStreamSink, RequestHeaders } from "./call-stream.js";
import { OK_TRAILERS, RESPONSE_HEADERS, statusHeaders, trailersOnly } from "./grpc-trailers.js";

export class NodeCallStream implements CallStream {
  private headersSent = false;
  private trailers: OutgoingHttpHeaders = OK_TRAILERS;

  constructor(
    private readonly stream: ServerHttp2Stream,
    readonly headers: RequestHeaders,
  ) {
    // A stream error (peer reset while writing) ends the call through 'close'; never unhandled.
    stream.on("error", noop);
  }

  get closed(): boolean {
    return this.stream.destroyed || this.stream.closed;
  }

  attach(sink: CallStreamSink): void {
    const s = this.stream;
    s.on("data", (chunk: Buffer) => sink.data(chunk));
    s.once("end", () => sink.end());
    // 'close' comes once: `on` spares the wrapper `once` makes on every call.
    s.on("close", () => sink.close());
    s.on("drain", () => sink.drain());
  }

  private respond(): void {
    if (this.headersSent) return;
    this.headersSent = true;
    this.stream.respond(RESPONSE_HEADERS, { waitForTrailers: true });
    this.stream.once("wantTrailers", () => this.stream.sendTrailers(this.trailers));
  }

  write(framed: Buffer): boolean {
    if (this.closed) return false;
    this.respond();
    return this.stream.write(framed);
  }

  finish(
    framed: Buffer | undefined,
    code: number,
    message: string,
    metadata?: Metadata,
    extra?: Record<string, string>,
  ): void {
    const { stream } = this;
    if (this.closed) return;
    if (!this.headersSent && framed === undefined) {
      this.headersSent = true;
      stream.respond({ ...trailersOnly(code, message, metadata), ...extra }, { endStream: true });
    } else {
      if (code !== 0 || metadata || message) this.trailers = statusHeaders(code, message, metadata);
      this.respond();
      if (framed) stream.end(framed);
      else stream.end();
    }
    // What the client still sends is read and dropped (flow control must not stall the session).
    if (!stream.readableEnded) stream.resume();
  }

  respondHttp(status: number): void {
    this.headersSent = true;
    this.stream.respond({ ":status": status }, { endStream: true });
    this.stream.resume();
  }

  pause(): void {
    this.stream.pause();
  }

  resume(): void {
    this.stream.resume();
  }
}

function noop(): void {}
