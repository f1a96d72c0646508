// The server side of one HTTP/2 connection (RFC 9113) for gRPC, on a plain socket, without
// node:http2. Why: most of a unary CRI read's server CPU through node:http2 was Node's
// Http2Stream / header machinery. bench/h2-floor.bench.ts (Version, k8s.io/cri-client, load 6):
// berth's server on node:http2 p50 228 µs, 203 µs CPU per call; on this connection 79 µs and
// 73 µs (a bare node:http2 answer without berth's wrapper: 182 µs, 139 µs). The answer also goes
// out in one socket write.
//
// What it does: checks the client preface, sends its SETTINGS and a connection WINDOW_UPDATE
// first, reads frames (h2-frames.ts), decodes header blocks with one HpackDecoder per
// connection (its dynamic table mirrors the client's encoder), keeps the stream table and both
// directions' flow control, and hands each request to `onStream` as an H2ServerStream.
// Responses are encoded without a dynamic table (hpack.ts), so no table state is sent.
// Request headers are validated in h2-request-headers.ts. Any violation the RFC calls a
// connection error ends the connection with GOAWAY and that code; stream errors reset the
// one stream. :authority is not checked at all.

import type { Socket } from "node:net";
import { H2Error, RECV } from "./h2-limits.js";
import {
  CLIENT_PREFACE,
  DEFAULT_MAX_FRAME_SIZE,
  DEFAULT_WINDOW,
  ErrorCode,
  Flag,
  frame,
  FRAME_HEADER_LENGTH,
  FrameType,
  MAX_WINDOW,
  Setting,
  u32,
} from "./h2-frames.js";
import { readRequestHeaders } from "./h2-request-headers.js";
import { H2Sender } from "./h2-sender.js";
import { H2ServerStream, type StreamOwner } from "./h2-server-stream.js";
import { HpackDecoder, HpackError } from "./hpack.js";

export interface H2ConnectionOptions {
  /** A complete request header block opened a stream; attach a call to it (synchronously). */
  onStream(stream: H2ServerStream): void;
  /** The connection is gone (closed by either side). */
  onClose(): void;
  /** A connection error this side found (for the debug log). */
  onError?(err: H2Error): void;
}

/** Our SETTINGS, sent first. The stream window is what lets a 16 MiB request flow without stalls. */
const SERVER_SETTINGS = (() => {
  const p = Buffer.alloc(18);
  p.writeUInt16BE(Setting.MAX_CONCURRENT_STREAMS, 0);
  p.writeUInt32BE(RECV.maxConcurrentStreams, 2);
  p.writeUInt16BE(Setting.INITIAL_WINDOW_SIZE, 6);
  p.writeUInt32BE(RECV.streamWindow, 8);
  p.writeUInt16BE(Setting.MAX_HEADER_LIST_SIZE, 12);
  p.writeUInt32BE(RECV.maxHeaderListSize, 14);
  return Buffer.concat([
    frame(FrameType.SETTINGS, 0, 0, p),
    frame(FrameType.WINDOW_UPDATE, 0, 0, u32(RECV.connectionWindow - DEFAULT_WINDOW)),
  ]);
})();
const SETTINGS_ACK = frame(FrameType.SETTINGS, Flag.ACK, 0);

/** A header block being put together from HEADERS and CONTINUATION frames. */
interface PendingBlock {
  streamId: number;
  endStream: boolean;
  parts: Buffer[];
  size: number;
  /** A stream error found in the HEADERS frame: the block is decoded, then the stream reset. */
  resetWith?: number;
}

export class H2Connection implements StreamOwner {
  readonly streams = new Map<number, H2ServerStream>();
  /** Streams with response bytes waiting for a window or the socket. */
  private readonly waiting = new Set<H2ServerStream>();
  /** Streams we reset lately: frames the client had in flight for them are ignored (5.4.2). */
  private readonly resetByUs = new Set<number>();
  private readonly decoder = new HpackDecoder({ maxListSize: RECV.maxHeaderListSize });
  private input: Buffer = Buffer.alloc(0);
  private prefaceSeen = false;
  private settingsSeen = false;
  private block: PendingBlock | undefined;
  /** The highest stream id the client opened. */
  private lastStreamId = 0;
  /** Ids the client jumped over (closed unused, 5.1.1), the latest 64 runs: [first, last]. */
  private readonly skipped: [number, number][] = [];
  /** The client's SETTINGS_INITIAL_WINDOW_SIZE: each new stream's send window. */
  private peerInitialWindow = DEFAULT_WINDOW;
  private readonly sender: H2Sender;
  /** Receive side: what the client may still send, and what we consumed but did not credit yet. */
  private recvWindow = RECV.connectionWindow;
  private recvUnacked = 0;
  /** GOAWAY sent (graceful) or received: no new streams; the connection ends when idle. */
  private draining = false;
  private dead = false;

  constructor(
    private readonly socket: Socket,
    private readonly opts: H2ConnectionOptions,
  ) {
    this.sender = new H2Sender(socket, this.streams, (s) => this.responseEnded(s));
    socket.setNoDelay?.(true);
    socket.on("data", (chunk: Buffer) => this.onBytes(chunk));
    socket.on("drain", () => this.sender.onDrain());
    socket.on("error", () => socket.destroy());
    socket.once("close", () => this.onSocketClose());
    socket.write(SERVER_SETTINGS);
  }

  /** Graceful: GOAWAY naming the last stream we take; in-flight calls finish, then it closes. */
  shutdown(): void {
    if (this.dead || this.draining) return;
    this.draining = true;
    this.send([goaway(this.lastStreamId, ErrorCode.NO_ERROR)]);
    this.endIfIdle();
  }

  /** Ends the connection now: every call still running is cancelled. */
  destroy(): void {
    this.socket.destroy();
  }

  private onSocketClose(): void {
    this.dead = true;
    for (const s of this.streams.values()) s.onGone();
    this.streams.clear();
    this.sender.waiting.clear();
    this.opts.onClose();
  }

  private onBytes(chunk: Buffer): void {
    if (this.dead) return;
    this.input = this.input.length === 0 ? chunk : Buffer.concat([this.input, chunk]);
    this.sender.startBatch();
    try {
      this.readFrames();
    } catch (err) {
      // A bug here or in a call's synchronous start costs this connection, not berthd.
      this.connectionError(
        err instanceof H2Error ? err : new H2Error(ErrorCode.INTERNAL_ERROR, `internal error: ${String(err)}`),
      );
    } finally {
      this.sender.endBatch();
    }
  }

  private readFrames(): void {
    const b = this.input;
    let at = 0;
    if (!this.prefaceSeen) {
      const n = Math.min(b.length, CLIENT_PREFACE.length);
      if (!b.subarray(0, n).equals(CLIENT_PREFACE.subarray(0, n))) {
        // Not HTTP/2 with prior knowledge (an HTTP/1 client, garbage): nothing to answer.
        this.opts.onError?.(new H2Error(ErrorCode.PROTOCOL_ERROR, "not the HTTP/2 client preface"));
        this.dead = true;
        this.input = Buffer.alloc(0);
        this.socket.destroy();
        return;
      }
      if (n < CLIENT_PREFACE.length) return;
      this.prefaceSeen = true;
      at = CLIENT_PREFACE.length;
    }
    while (!this.dead && b.length - at >= FRAME_HEADER_LENGTH) {
      const length = (b[at]! << 16) | (b[at + 1]! << 8) | b[at + 2]!;
      if (length > DEFAULT_MAX_FRAME_SIZE) throw new H2Error(ErrorCode.FRAME_SIZE_ERROR, `frame of ${length} bytes`);
      if (b.length - at < FRAME_HEADER_LENGTH + length) break;
      const type = b[at + 3]!;
      const flags = b[at + 4]!;
      const id = b.readUInt32BE(at + 5) & 0x7fffffff;
      const payload = b.subarray(at + FRAME_HEADER_LENGTH, at + FRAME_HEADER_LENGTH + length);
      at += FRAME_HEADER_LENGTH + length;
      this.onFrame(type, flags, id, payload);
    }
    // A partial frame stays (a view; the next chunk is appended to a copy of it).
    this.input = at === b.length ? Buffer.alloc(0) : b.subarray(at);
  }

  private onFrame(type: number, flags: number, id: number, payload: Buffer): void {
    if (!this.settingsSeen) {
      // 3.4: the client's preface ends with a SETTINGS frame.
      if (type !== FrameType.SETTINGS || flags & Flag.ACK)
        throw new H2Error(ErrorCode.PROTOCOL_ERROR, "no SETTINGS after the preface");
      this.settingsSeen = true;
    }
    if (this.block && (type !== FrameType.CONTINUATION || id !== this.block.streamId))
      throw new H2Error(ErrorCode.PROTOCOL_ERROR, "a frame inside a header block");
    switch (type) {
      case FrameType.DATA:
        return this.onData(flags, id, payload);
      case FrameType.HEADERS:
        return this.onHeaders(flags, id, payload);
      case FrameType.PRIORITY:
        if (id === 0) throw new H2Error(ErrorCode.PROTOCOL_ERROR, "PRIORITY on stream 0");
        if (payload.length !== 5) return this.resetStream(id, ErrorCode.FRAME_SIZE_ERROR);
        // Deprecated (RFC 9113 5.3.2), ignored but for a stream depending on itself (5.3.1): an
        // open one is reset; an idle one may not be (5.1), so that costs the connection.
        if ((payload.readUInt32BE(0) & 0x7fffffff) === id) {
          if (this.streams.has(id)) return this.resetStream(id, ErrorCode.PROTOCOL_ERROR);
          if (id > this.lastStreamId) throw new H2Error(ErrorCode.PROTOCOL_ERROR, "PRIORITY: a stream on itself");
        }
        return;
      case FrameType.RST_STREAM:
        return this.onRstStream(id, payload);
      case FrameType.SETTINGS:
        return this.onSettings(flags, id, payload);
      case FrameType.PUSH_PROMISE:
        throw new H2Error(ErrorCode.PROTOCOL_ERROR, "PUSH_PROMISE from a client");
      case FrameType.PING:
        if (id !== 0) throw new H2Error(ErrorCode.PROTOCOL_ERROR, "PING on a stream");
        if (payload.length !== 8) throw new H2Error(ErrorCode.FRAME_SIZE_ERROR, "PING of a wrong size");
        if (!(flags & Flag.ACK)) this.send([frame(FrameType.PING, Flag.ACK, 0, payload)]);
        return;
      case FrameType.GOAWAY:
        if (id !== 0) throw new H2Error(ErrorCode.PROTOCOL_ERROR, "GOAWAY on a stream");
        // The client opens no more streams; those it has finish, then the connection ends.
        this.draining = true;
        return this.endIfIdle();
      case FrameType.WINDOW_UPDATE:
        return this.onWindowUpdate(id, payload);
      case FrameType.CONTINUATION:
        return this.onContinuation(flags, id, payload);
      default:
        return; // Unknown frame types are ignored (5.5).
    }
  }

  private onSettings(flags: number, id: number, p: Buffer): void {
    if (id !== 0) throw new H2Error(ErrorCode.PROTOCOL_ERROR, "SETTINGS on a stream");
    if (flags & Flag.ACK) {
      if (p.length !== 0) throw new H2Error(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS ACK with a payload");
      return;
    }
    if (p.length % 6 !== 0) throw new H2Error(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS of a wrong size");
    for (let i = 0; i < p.length; i += 6) {
      const key = p.readUInt16BE(i);
      const value = p.readUInt32BE(i + 2);
      if (key === Setting.ENABLE_PUSH && value > 1) throw new H2Error(ErrorCode.PROTOCOL_ERROR, "ENABLE_PUSH over 1");
      if (key === Setting.INITIAL_WINDOW_SIZE) {
        if (value > MAX_WINDOW) throw new H2Error(ErrorCode.FLOW_CONTROL_ERROR, "INITIAL_WINDOW_SIZE over 2^31-1");
        // 6.9.2: the change applies to every open stream's window, which may go negative.
        const delta = value - this.peerInitialWindow;
        this.peerInitialWindow = value;
        for (const s of this.streams.values()) {
          s.sendWindow += delta;
          if (s.sendWindow > MAX_WINDOW) throw new H2Error(ErrorCode.FLOW_CONTROL_ERROR, "a stream window over 2^31-1");
        }
      } else if (key === Setting.MAX_FRAME_SIZE) {
        if (value < DEFAULT_MAX_FRAME_SIZE || value > 0xffffff)
          throw new H2Error(ErrorCode.PROTOCOL_ERROR, `MAX_FRAME_SIZE ${value}`);
        this.sender.maxFrameSize = value;
      }
      // HEADER_TABLE_SIZE: our encoder never uses a dynamic table. The rest are not ours to obey.
    }
    this.send([SETTINGS_ACK]);
    this.sender.flushWaiting();
  }

  private onWindowUpdate(id: number, p: Buffer): void {
    if (p.length !== 4) throw new H2Error(ErrorCode.FRAME_SIZE_ERROR, "WINDOW_UPDATE of a wrong size");
    const inc = p.readUInt32BE(0) & 0x7fffffff;
    if (id === 0) {
      if (inc === 0) throw new H2Error(ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE of 0");
      this.sender.window += inc;
      if (this.sender.window > MAX_WINDOW)
        throw new H2Error(ErrorCode.FLOW_CONTROL_ERROR, "connection window over 2^31-1");
      return this.sender.flushWaiting();
    }
    const s = this.streams.get(id);
    if (!s) {
      if (id > this.lastStreamId) throw new H2Error(ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE on an idle stream");
      return; // A closed stream: the client may not know yet.
    }
    if (inc === 0) return this.resetStream(id, ErrorCode.PROTOCOL_ERROR);
    s.sendWindow += inc;
    if (s.sendWindow > MAX_WINDOW) return this.resetStream(id, ErrorCode.FLOW_CONTROL_ERROR);
    this.sender.flush(s);
    this.sender.notifyDrain(s);
  }

  private onRstStream(id: number, p: Buffer): void {
    if (id === 0) throw new H2Error(ErrorCode.PROTOCOL_ERROR, "RST_STREAM on stream 0");
    if (p.length !== 4) throw new H2Error(ErrorCode.FRAME_SIZE_ERROR, "RST_STREAM of a wrong size");
    if (id > this.lastStreamId) throw new H2Error(ErrorCode.PROTOCOL_ERROR, "RST_STREAM on an idle stream");
    const s = this.streams.get(id);
    if (s) this.removeStream(s); // The call is cancelled (the client gave up on it).
  }

  private onData(flags: number, id: number, p: Buffer): void {
    if (id === 0) throw new H2Error(ErrorCode.PROTOCOL_ERROR, "DATA on stream 0");
    // Flow control counts the whole payload, padding included (6.9.1).
    if (p.length > this.recvWindow)
      throw new H2Error(ErrorCode.FLOW_CONTROL_ERROR, "DATA beyond the connection window");
    this.recvWindow -= p.length;
    const s = this.streams.get(id);
    if (!s) {
      if (id > this.lastStreamId) throw new H2Error(ErrorCode.PROTOCOL_ERROR, "DATA on an idle stream");
      this.consumedConnection(p.length);
      // Closed: ignored when we reset it (the client had it in flight), else STREAM_CLOSED.
      if (!this.resetByUs.has(id)) this.resetStream(id, ErrorCode.STREAM_CLOSED);
      return;
    }
    if (s.remoteEnded) {
      this.consumedConnection(p.length);
      return this.resetStream(id, ErrorCode.STREAM_CLOSED);
    }
    if (p.length > s.recvWindow) throw new H2Error(ErrorCode.FLOW_CONTROL_ERROR, "DATA beyond the stream window");
    s.recvWindow -= p.length;
    let data = p;
    if (flags & Flag.PADDED) {
      const pad = p.length > 0 ? p[0]! : 256;
      if (pad >= p.length) throw new H2Error(ErrorCode.PROTOCOL_ERROR, "DATA padding longer than the frame");
      data = p.subarray(1, p.length - pad);
      this.consumed(s, p.length - data.length);
    }
    if (data.length > 0) s.onData(data);
    if (flags & Flag.END_STREAM) this.remoteEnd(s);
  }

  private onHeaders(flags: number, id: number, p: Buffer): void {
    if (id === 0) throw new H2Error(ErrorCode.PROTOCOL_ERROR, "HEADERS on stream 0");
    let from = 0;
    let to = p.length;
    let resetWith: number | undefined;
    if (flags & Flag.PADDED) {
      if (p.length < 1) throw new H2Error(ErrorCode.FRAME_SIZE_ERROR, "HEADERS too short for its padding");
      from = 1;
      to -= p[0]!;
    }
    if (flags & Flag.PRIORITY) {
      // 5 bytes of deprecated priority, ignored; a stream depending on itself is still an error.
      if (to - from < 5) throw new H2Error(ErrorCode.PROTOCOL_ERROR, "HEADERS too short for its priority");
      if ((p.readUInt32BE(from) & 0x7fffffff) === id) resetWith = ErrorCode.PROTOCOL_ERROR;
      from += 5;
    }
    if (to < from) throw new H2Error(ErrorCode.PROTOCOL_ERROR, "HEADERS padding longer than the frame");
    const endStream = (flags & Flag.END_STREAM) !== 0;
    this.block = { streamId: id, endStream, parts: [p.subarray(from, to)], size: to - from, resetWith };
    if (flags & Flag.END_HEADERS) this.endBlock();
    else this.checkBlockSize();
  }

  private onContinuation(flags: number, id: number, p: Buffer): void {
    if (!this.block || this.block.streamId !== id)
      throw new H2Error(ErrorCode.PROTOCOL_ERROR, "CONTINUATION out of place");
    this.block.parts.push(p);
    this.block.size += p.length;
    if (flags & Flag.END_HEADERS) this.endBlock();
    else this.checkBlockSize();
  }

  private checkBlockSize(): void {
    if (this.block!.size > RECV.maxHeaderBlock)
      throw new H2Error(ErrorCode.ENHANCE_YOUR_CALM, `a header block over ${RECV.maxHeaderBlock} bytes`);
  }

  private endBlock(): void {
    const { streamId: id, endStream, parts, resetWith } = this.block!;
    this.block = undefined;
    let fields;
    try {
      fields = this.decoder.decode(parts.length === 1 ? parts[0]! : Buffer.concat(parts)).fields;
    } catch (err) {
      if (err instanceof HpackError) throw new H2Error(ErrorCode.COMPRESSION_ERROR, err.message);
      throw err;
    }
    const open = this.streams.get(id);
    if (open) {
      if (resetWith !== undefined) return this.resetStream(id, resetWith);
      // 5.1: after the client's END_STREAM only WINDOW_UPDATE, PRIORITY and RST_STREAM may come.
      if (open.remoteEnded) return this.resetStream(id, ErrorCode.STREAM_CLOSED);
      // Trailers from the client: they must end the stream (8.1); gRPC clients send none.
      if (!endStream) return this.resetStream(id, ErrorCode.PROTOCOL_ERROR);
      return this.remoteEnd(open);
    }
    if (id <= this.lastStreamId) {
      if (this.resetByUs.has(id)) return;
      // 5.1.1: a new stream's id must exceed every id used before; a used one is closed (5.1).
      if (this.skipped.some(([a, b]) => id >= a && id <= b))
        throw new H2Error(ErrorCode.PROTOCOL_ERROR, `stream id ${id} is below ${this.lastStreamId}, already opened`);
      throw new H2Error(ErrorCode.STREAM_CLOSED, "HEADERS on a closed stream");
    }
    if (id % 2 === 0) throw new H2Error(ErrorCode.PROTOCOL_ERROR, `client stream id ${id} is even`);
    const next = this.lastStreamId === 0 ? 1 : this.lastStreamId + 2;
    if (id > next && this.skipped.push([next, id - 2]) > 64) this.skipped.shift();
    // The stream leaves idle even when it is reset at once: DATA the client sent behind the
    // HEADERS is then ignored, not taken for DATA on an idle stream (a connection error).
    this.lastStreamId = id;
    if (resetWith !== undefined) return this.resetStream(id, resetWith);
    if (this.draining) return this.resetStream(id, ErrorCode.REFUSED_STREAM);
    if (this.streams.size >= RECV.maxConcurrentStreams) return this.resetStream(id, ErrorCode.REFUSED_STREAM);
    const headers = readRequestHeaders(fields);
    if (!headers) return this.resetStream(id, ErrorCode.PROTOCOL_ERROR);
    const s = new H2ServerStream(id, headers, this, this.peerInitialWindow, RECV.streamWindow);
    this.streams.set(id, s);
    this.opts.onStream(s);
    if (endStream) this.remoteEnd(s);
  }

  private remoteEnd(s: H2ServerStream): void {
    s.onEnd();
    if (s.endSent) this.removeStream(s);
  }

  // ---- StreamOwner: what streams call ----

  consumed(s: H2ServerStream, n: number): void {
    this.consumedConnection(n);
    if (s.remoteEnded || s.gone) return;
    s.recvUnacked += n;
    // Credited in batches (half the window): a small unary request costs no WINDOW_UPDATE.
    if (s.recvUnacked >= RECV.streamWindow / 2) {
      this.send([frame(FrameType.WINDOW_UPDATE, 0, s.id, u32(s.recvUnacked))]);
      s.recvWindow += s.recvUnacked;
      s.recvUnacked = 0;
    }
  }

  private consumedConnection(n: number): void {
    this.recvUnacked += n;
    if (this.recvUnacked >= RECV.connectionWindow / 2) {
      this.send([frame(FrameType.WINDOW_UPDATE, 0, 0, u32(this.recvUnacked))]);
      this.recvWindow += this.recvUnacked;
      this.recvUnacked = 0;
    }
  }

  flush(s: H2ServerStream): void {
    this.sender.flush(s);
  }

  get blocked(): boolean {
    return this.sender.blocked;
  }

  /** The last frame of `s`'s response went out. */
  private responseEnded(s: H2ServerStream): void {
    if (s.remoteEnded) this.removeStream(s);
    // 8.1: the response is complete before the request: ask the client to stop, no error.
    else this.resetStream(s.id, ErrorCode.NO_ERROR);
  }

  private send(frames: Buffer[]): void {
    if (!this.dead) this.sender.send(frames);
  }

  private resetStream(id: number, code: number): void {
    this.send([frame(FrameType.RST_STREAM, 0, id, u32(code))]);
    this.resetByUs.add(id);
    if (this.resetByUs.size > 256) this.resetByUs.delete(this.resetByUs.values().next().value!);
    const s = this.streams.get(id);
    if (s) this.removeStream(s);
  }

  private removeStream(s: H2ServerStream): void {
    this.streams.delete(s.id);
    this.sender.waiting.delete(s);
    s.onGone();
    this.endIfIdle();
  }

  private endIfIdle(): void {
    if (this.draining && this.streams.size === 0 && !this.dead) {
      this.dead = true;
      // After this read's frames (the last answer) are written: end() flushes, then closes; a
      // client that never closes its side is cut off a moment later.
      setImmediate(() => {
        this.socket.end();
        setTimeout(() => this.socket.destroy(), 1000).unref();
      });
    }
  }

  private connectionError(err: H2Error): void {
    this.opts.onError?.(err);
    const out = this.sender.takeBatch();
    out.push(goaway(this.lastStreamId, err.code, err.message));
    this.dead = true;
    this.socket.end(Buffer.concat(out));
    // Calls in flight end now; the socket's close also reports to the server.
    for (const s of this.streams.values()) s.onGone();
    this.streams.clear();
    setTimeout(() => this.socket.destroy(), 1000).unref();
  }
}

function goaway(lastStreamId: number, code: number, debug = ""): Buffer {
  const p = Buffer.allocUnsafe(8 + Buffer.byteLength(debug));
  p.writeUInt32BE(lastStreamId, 0);
  p.writeUInt32BE(code, 4);
  p.write(debug, 8);
  return frame(FrameType.GOAWAY, 0, 0, p);
}
