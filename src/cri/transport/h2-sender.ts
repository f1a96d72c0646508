// The sending side of berth's HTTP/2 server connection (h2-connection.ts): response frames go
// out within the client's windows (connection and stream) and its MAX_FRAME_SIZE; what does not
// fit waits until a WINDOW_UPDATE or SETTINGS makes room. The socket's backpressure holds it
// too: after a write returned false, response bytes wait for 'drain' (control frames do not).
// Frames made while a read of the client's bytes is processed are batched into one write at
// its end; a unary answer made outside a read (the usual case: the handler is async) is one
// write of its own: HEADERS + DATA + trailers.

import type { Socket } from "node:net";
import { H2Error, RECV } from "./h2-limits.js";
import {
  DEFAULT_MAX_FRAME_SIZE,
  DEFAULT_WINDOW,
  ErrorCode,
  Flag,
  FRAME_HEADER_LENGTH,
  FrameType,
  headerBlockFrames,
} from "./h2-frames.js";
import type { H2ServerStream } from "./h2-server-stream.js";

/** From this many bytes, the frames of one write go out by writev instead of being copied together. */
const WRITEV_BYTES = 64 << 10;

export class H2Sender {
  /** The connection's send window (the client's receive window for the connection). */
  window = DEFAULT_WINDOW;
  /** The client's SETTINGS_MAX_FRAME_SIZE. */
  maxFrameSize = DEFAULT_MAX_FRAME_SIZE;
  /** The last socket write returned false: response bytes wait for 'drain'. */
  blocked = false;
  /** Streams with response bytes waiting for a window or the socket. */
  readonly waiting = new Set<H2ServerStream>();
  private batch: Buffer[] | undefined;

  constructor(
    private readonly socket: Socket,
    private readonly streams: ReadonlyMap<number, H2ServerStream>,
    /** The last frame of a stream's response went out. */
    private readonly ended: (s: H2ServerStream) => void,
  ) {}

  startBatch(): void {
    this.batch = [];
  }

  /** Writes what the batch holds (one write). */
  endBatch(): void {
    const out = this.takeBatch();
    if (out.length > 0 && !this.socket.destroyed) this.writeAll(out);
  }

  /** The batch so far, which is then no longer written (the connection ends with it). */
  takeBatch(): Buffer[] {
    const out = this.batch ?? [];
    this.batch = undefined;
    return out;
  }

  send(frames: Buffer[]): void {
    if (this.batch) {
      for (const f of frames) this.batch.push(f);
      return;
    }
    this.writeAll(frames);
  }

  /**
   * One socket write of `bufs`: small ones copied together, large ones (a big list's DATA
   * frames, views of its message) handed over as they are and written with one writev, so a
   * response of 1,000 containers is not copied once more on its way out.
   */
  private writeAll(bufs: Buffer[]): void {
    if (bufs.length === 1) return this.write(bufs[0]!);
    let total = 0;
    for (let i = 0; i < bufs.length; i++) total += bufs[i]!.length;
    if (total < WRITEV_BYTES) return this.write(Buffer.concat(bufs, total));
    if (this.socket.destroyed) return;
    this.socket.cork();
    for (let i = 0; i < bufs.length - 1; i++) this.socket.write(bufs[i]!);
    this.write(bufs[bufs.length - 1]!);
    this.socket.uncork();
  }

  private write(b: Buffer): void {
    if (this.socket.destroyed) return;
    if (!this.socket.write(b)) {
      this.blocked = true;
      // A client that sends (PINGs, SETTINGS) but never reads could make control frames pile up.
      if (this.socket.writableLength > RECV.maxWriteBacklog) {
        this.socket.destroy(new H2Error(ErrorCode.ENHANCE_YOUR_CALM, "the client reads nothing"));
      }
    }
  }

  /** Sends what `s` has queued, as far as the windows and the socket allow. */
  flush(s: H2ServerStream): void {
    if (s.gone || this.socket.destroyed) return;
    if (this.blocked) {
      this.waiting.add(s);
      return;
    }
    if (this.unaryAnswer(s)) return;
    const out: Buffer[] = [];
    let bytes = 0;
    if (s.pendingHeaders) {
      const endStream = s.pendingHeadersEnd;
      out.push(...headerBlockFrames(s.id, s.pendingHeaders, { endStream, maxFrameSize: this.maxFrameSize }));
      s.pendingHeaders = undefined;
      if (endStream) s.endSent = true;
    }
    while (s.queued > 0 && bytes < RECV.maxWriteBatch) {
      const room = Math.min(this.window, s.sendWindow, this.maxFrameSize);
      if (room <= 0) break;
      let head = s.queue[0]!;
      if (head.length > room) {
        s.queue[0] = head.subarray(room);
        head = head.subarray(0, room);
      } else s.queue.shift();
      out.push(dataFrameHeader(s.id, head.length), head);
      s.queued -= head.length;
      bytes += head.length;
      s.sendWindow -= head.length;
      this.window -= head.length;
    }
    if (s.queued === 0 && s.trailers) {
      out.push(...headerBlockFrames(s.id, s.trailers, { endStream: true, maxFrameSize: this.maxFrameSize }));
      s.trailers = undefined;
      s.endSent = true;
    }
    if (s.queued > 0) this.waiting.add(s);
    else this.waiting.delete(s);
    if (out.length > 0) this.send(out);
    if (s.endSent) this.ended(s);
    // Stopped by the batch cap with room left in the windows: if the socket took it all at
    // once there is no 'drain' to come, and the client may owe no WINDOW_UPDATE yet.
    if (bytes >= RECV.maxWriteBatch && s.queued > 0 && !this.blocked) this.scheduleFlush();
  }

  /**
   * The usual unary answer, whole: headers, one message within every window and frame size, and
   * the trailers, built as one buffer (three frames). It is what every call ends with, and the
   * general path's arrays, spreads and concat are what costs most while berthd's code is still
   * interpreted (the first calls after a start). False (nothing done) for anything else.
   */
  private unaryAnswer(s: H2ServerStream): boolean {
    const headers = s.pendingHeaders;
    const trailers = s.trailers;
    if (!headers || !trailers || s.pendingHeadersEnd || s.queue.length !== 1) return false;
    const data = s.queue[0]!;
    const max = this.maxFrameSize;
    if (data.length > max || data.length > this.window || data.length > s.sendWindow) return false;
    if (headers.length > max || trailers.length > max) return false;
    const out = Buffer.allocUnsafe(3 * FRAME_HEADER_LENGTH + headers.length + data.length + trailers.length);
    let at = putFrameHeader(out, 0, headers.length, FrameType.HEADERS, Flag.END_HEADERS, s.id);
    at += headers.copy(out, at);
    at = putFrameHeader(out, at, data.length, FrameType.DATA, 0, s.id);
    at += data.copy(out, at);
    at = putFrameHeader(out, at, trailers.length, FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, s.id);
    trailers.copy(out, at);
    s.pendingHeaders = undefined;
    s.trailers = undefined;
    s.queue.length = 0;
    s.queued = 0;
    s.sendWindow -= data.length;
    this.window -= data.length;
    s.endSent = true;
    this.waiting.delete(s);
    this.send([out]);
    this.ended(s);
    return true;
  }

  private flushScheduled = false;
  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      if (!this.blocked && !this.socket.destroyed) this.flushWaiting();
    });
  }

  onDrain(): void {
    this.blocked = false;
    this.flushWaiting();
  }

  /** Sends what waited for a window or the socket; tells the streams that asked to drain. */
  flushWaiting(): void {
    for (const s of [...this.waiting]) {
      if (this.blocked) break;
      this.waiting.delete(s);
      this.flush(s);
    }
    if (this.blocked) return;
    for (const s of this.streams.values()) this.notifyDrain(s);
  }

  notifyDrain(s: H2ServerStream): void {
    if (s.wantDrain && s.queued === 0 && !this.blocked && !s.gone) {
      s.wantDrain = false;
      s.sink?.drain();
    }
  }
}

/** Writes a frame's 9 header bytes into `out` at `at`; returns where the payload goes. */
function putFrameHeader(out: Buffer, at: number, length: number, type: number, flags: number, id: number): number {
  out[at] = length >>> 16;
  out[at + 1] = (length >>> 8) & 0xff;
  out[at + 2] = length & 0xff;
  out[at + 3] = type;
  out[at + 4] = flags;
  out.writeUInt32BE(id & 0x7fffffff, at + 5);
  return at + FRAME_HEADER_LENGTH;
}

/** A DATA frame's 9 header bytes; the payload follows as its own buffer (no copy). */
function dataFrameHeader(id: number, length: number): Buffer {
  const h = Buffer.allocUnsafe(FRAME_HEADER_LENGTH);
  h.writeUIntBE(length, 0, 3);
  h[3] = FrameType.DATA;
  h[4] = 0;
  h.writeUInt32BE(id, 5);
  return h;
}
