// ttrpc message framing (containerd/ttrpc PROTOCOL.md, channel.go).
// Every message is a 10-byte big-endian header followed by its payload:
//   u32 payload length (header excluded) | u32 stream id | u8 message type | u8 flags
// No handshake, no pings, no flow control: a frame is all there is.

export const HEADER_LENGTH = 10;

/** ttrpc's default (and Go's fixed) maximum payload: 4 MiB. */
export const DEFAULT_MAX_MESSAGE_SIZE = 4 << 20;

export const MessageType = {
  REQUEST: 0x1,
  RESPONSE: 0x2,
  DATA: 0x3,
} as const;

/** Flag bits; their meaning depends on the message type (see PROTOCOL.md). */
export const Flags = {
  /** request: non-unary, the client sends no more data; data: last message from the sender. */
  REMOTE_CLOSED: 0x1,
  /** request: non-unary, the client will send data messages. */
  REMOTE_OPEN: 0x2,
  /** data: the message carries no payload (e.g. a bare close). */
  NO_DATA: 0x4,
} as const;

export interface FrameHeader {
  length: number;
  streamId: number;
  type: number;
  flags: number;
}

export function encodeHeader(h: FrameHeader, target: Buffer = Buffer.allocUnsafe(HEADER_LENGTH), offset = 0): Buffer {
  target.writeUInt32BE(h.length, offset);
  target.writeUInt32BE(h.streamId, offset + 4);
  target[offset + 8] = h.type;
  target[offset + 9] = h.flags;
  return target;
}

export function decodeHeader(buf: Uint8Array, offset = 0): FrameHeader {
  if (buf.length - offset < HEADER_LENGTH) throw new RangeError(`ttrpc: header needs ${HEADER_LENGTH} bytes`);
  const view = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  return {
    length: view.readUInt32BE(offset),
    streamId: view.readUInt32BE(offset + 4),
    type: view[offset + 8]!,
    flags: view[offset + 9]!,
  };
}

/** One whole frame (header and payload) in a single buffer, ready for one socket write. */
export function encodeFrame(streamId: number, type: number, flags: number, payload: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(HEADER_LENGTH + payload.length);
  encodeHeader({ length: payload.length, streamId, type, flags }, out, 0);
  out.set(payload, HEADER_LENGTH);
  return out;
}

export interface FrameSink {
  /** A complete frame whose payload is within the limit. */
  frame(header: FrameHeader, payload: Buffer): void;
  /**
   * A frame whose declared length was over the limit; its payload has been read and thrown
   * away (never buffered), so the stream is in sync again and the connection can go on.
   */
  oversized(header: FrameHeader, limit: number): void;
}

/**
 * Incremental frame parser. Feed it socket chunks in order; it calls the sink once per frame.
 * It never allocates more than `maxMessageSize` for a payload whatever length a peer claims:
 * an oversized payload is skipped byte-count-wise as it streams past.
 */
export class FrameParser {
  private readonly header = Buffer.allocUnsafe(HEADER_LENGTH);
  private headerFill = 0;
  private current: FrameHeader | undefined;
  private body: Buffer | undefined;
  private bodyFill = 0;
  private discardLeft = 0;
  private stopped = false;

  constructor(
    private readonly sink: FrameSink,
    readonly maxMessageSize: number = DEFAULT_MAX_MESSAGE_SIZE,
  ) {}

  /** True when no partial frame is buffered (the peer stopped at a frame boundary). */
  get idle(): boolean {
    return this.headerFill === 0 && this.current === undefined;
  }

  /** Ignore all further input (the owner gave up on this connection). */
  stop(): void {
    this.stopped = true;
  }

  push(chunk: Buffer): void {
    let pos = 0;
    while (pos < chunk.length && !this.stopped) {
      const cur = this.current;
      if (cur === undefined) {
        // Fast path: a whole header (and maybe its whole payload) inside this chunk.
        if (this.headerFill === 0 && chunk.length - pos >= HEADER_LENGTH) {
          const h = decodeHeader(chunk, pos);
          pos += HEADER_LENGTH;
          if (h.length <= this.maxMessageSize && chunk.length - pos >= h.length) {
            // subarray shares memory with the chunk; Node gives each 'data' event a fresh buffer.
            const payload = chunk.subarray(pos, pos + h.length);
            pos += h.length;
            this.sink.frame(h, payload);
            continue;
          }
          this.begin(h);
          continue;
        }
        const n = Math.min(HEADER_LENGTH - this.headerFill, chunk.length - pos);
        chunk.copy(this.header, this.headerFill, pos, pos + n);
        this.headerFill += n;
        pos += n;
        if (this.headerFill === HEADER_LENGTH) {
          this.headerFill = 0;
          this.begin(decodeHeader(this.header));
        }
        continue;
      }
      if (this.body !== undefined) {
        const n = Math.min(this.body.length - this.bodyFill, chunk.length - pos);
        chunk.copy(this.body, this.bodyFill, pos, pos + n);
        this.bodyFill += n;
        pos += n;
        if (this.bodyFill === this.body.length) this.finish();
        continue;
      }
      const n = Math.min(this.discardLeft, chunk.length - pos);
      this.discardLeft -= n;
      pos += n;
      if (this.discardLeft === 0) this.finish();
    }
  }

  private begin(h: FrameHeader): void {
    this.current = h;
    if (h.length > this.maxMessageSize) {
      this.body = undefined;
      this.discardLeft = h.length;
    } else {
      this.body = Buffer.allocUnsafe(h.length);
      this.bodyFill = 0;
    }
    if (h.length === 0) this.finish();
  }

  private finish(): void {
    const h = this.current!;
    const body = this.body;
    this.current = undefined;
    this.body = undefined;
    this.bodyFill = 0;
    this.discardLeft = 0;
    if (body === undefined) this.sink.oversized(h, this.maxMessageSize);
    else this.sink.frame(h, body);
  }
}
