// Rewrites the client -> server byte stream of one HTTP/2 connection so that every request's
// :authority is one nghttp2 accepts (authority.ts). It parses frames after the connection
// preface; DATA and every other frame pass through as slices of the input, never buffered;
// header blocks (HEADERS + CONTINUATION until END_HEADERS) are collected and decoded.
//
// Keeping both HPACK dynamic tables in step: the decoder here mirrors the client's encoder. While
// no block needs a change, blocks are forwarded byte for byte, so the server's decoder table is
// the same as ours. The first block that needs a change, and every block after it, is re-encoded
// with static-table indexes and literals without indexing (hpack.ts encodeWithoutIndexing): the
// server's table then never changes again (except for forwarded size updates) and is never
// referenced, while our decoder keeps following the client's table. Both stay consistent.
//
// Anything that is not a well-formed client stream (bad preface, bad HPACK, a header block over
// the cap, CONTINUATION out of place, another frame inside a header block, PUSH_PROMISE from a
// client) throws H2ProtocolError: the caller closes that connection.

import { fixRequestAuthority } from "./authority.js";
import {
  CLIENT_PREFACE,
  DEFAULT_MAX_FRAME_SIZE,
  Flag,
  FRAME_HEADER_LENGTH,
  FrameType,
  H2ProtocolError,
  headerBlockFrames,
  readFrameHeader,
  type FrameHeader,
} from "./h2-frames.js";
import { HpackDecoder, HpackError, encodeWithoutIndexing } from "./hpack.js";

export const MAX_HEADER_BLOCK = 1 << 20;
/** What a HEADERS frame may add around its fragment: pad length, priority, 255 bytes of padding. */
const HEADERS_OVERHEAD = 1 + 5 + 255;

/** Sees a small SETTINGS or PING frame before it is forwarded; returning true drops it. */
export type ControlInterceptor = (type: number, flags: number, payload: Buffer) => boolean;

export interface RewriterOptions {
  /** Cap on one header block (compressed, summed over its frames) and on its decoded list. */
  maxHeaderBlock?: number;
  /** Largest frame payload to send the server; the HTTP/2 default fits every peer. */
  maxFrameSize?: number;
  intercept?: ControlInterceptor;
  /** Checked after every complete frame: true stops processing; the rest waits for resume(). */
  stopWhen?: () => boolean;
}

/** How the current frame's payload is handled. */
type Mode = "forward" | "block" | "control";

interface Block {
  streamId: number;
  endStream: boolean;
  priority: Buffer | undefined;
  fragments: Buffer[];
  size: number;
  /** The block's frames exactly as received, for byte-for-byte forwarding. */
  raw: Buffer[];
}

/** The frame being received: one fixed shape, as this is on every frame's path. */
class InFrame implements FrameHeader {
  readonly length: number;
  readonly type: number;
  readonly flags: number;
  readonly streamId: number;
  left: number;
  readonly pieces: Buffer[] = [];

  constructor(
    h: FrameHeader,
    readonly mode: Mode,
    readonly header: Buffer,
  ) {
    this.length = h.length;
    this.type = h.type;
    this.flags = h.flags;
    this.streamId = h.streamId;
    this.left = h.length;
  }
}

export class AuthorityRewriter {
  /** True once blocks are re-encoded (from the first block that needed a change on). */
  rewriting = false;
  /** Request header blocks seen (the first header block of each new stream). */
  requests = 0;
  intercept: ControlInterceptor | undefined;
  stopWhen: (() => boolean) | undefined;

  private readonly decoder: HpackDecoder;
  private readonly maxHeaderBlock: number;
  private readonly maxFrameSize: number;
  private prefaceSeen = 0;
  private readonly head = Buffer.alloc(FRAME_HEADER_LENGTH);
  private headLen = 0;
  private cur: InFrame | undefined;
  private block: Block | undefined;
  private lastStreamId = 0;
  private stopped = false;
  private held: Buffer[] = [];

  constructor(opts: RewriterOptions = {}) {
    this.maxHeaderBlock = opts.maxHeaderBlock ?? MAX_HEADER_BLOCK;
    this.maxFrameSize = opts.maxFrameSize ?? DEFAULT_MAX_FRAME_SIZE;
    this.decoder = new HpackDecoder({ maxListSize: this.maxHeaderBlock });
    this.intercept = opts.intercept;
    this.stopWhen = opts.stopWhen;
  }

  /** Whether stopWhen stopped processing (input since then is held, unprocessed). */
  get isStopped(): boolean {
    return this.stopped;
  }

  /** Feeds client bytes; returns the bytes to send the server, in order. Throws H2ProtocolError. */
  push(chunk: Buffer): Buffer[] {
    const out: Buffer[] = [];
    if (this.stopped) {
      this.held.push(chunk);
      return out;
    }
    try {
      this.process(chunk, out);
    } catch (err) {
      if (err instanceof HpackError) throw new H2ProtocolError(`bad header block: ${err.message}`);
      throw err;
    }
    return out;
  }

  /** The input held since the stop, unprocessed (for handing the raw stream on). */
  takeHeld(): Buffer[] {
    const held = this.held;
    this.held = [];
    return held;
  }

  /** Continues after a stop (stopWhen cleared): processes the held input. */
  resume(): Buffer[] {
    this.stopped = false;
    this.stopWhen = undefined;
    const out: Buffer[] = [];
    for (const chunk of this.takeHeld()) out.push(...this.push(chunk));
    return out;
  }

  private process(chunk: Buffer, out: Buffer[]): void {
    let i = 0;
    while (i < chunk.length) {
      if (this.stopped) {
        this.held.push(chunk.subarray(i));
        return;
      }
      if (this.prefaceSeen < CLIENT_PREFACE.length) {
        const n = Math.min(CLIENT_PREFACE.length - this.prefaceSeen, chunk.length - i);
        if (!chunk.subarray(i, i + n).equals(CLIENT_PREFACE.subarray(this.prefaceSeen, this.prefaceSeen + n))) {
          throw new H2ProtocolError("not an HTTP/2 connection preface");
        }
        out.push(chunk.subarray(i, i + n));
        this.prefaceSeen += n;
        i += n;
        continue;
      }
      if (this.cur === undefined) {
        let header: Buffer;
        if (this.headLen === 0 && chunk.length - i >= FRAME_HEADER_LENGTH) {
          header = chunk.subarray(i, i + FRAME_HEADER_LENGTH);
          i += FRAME_HEADER_LENGTH;
        } else {
          const n = Math.min(FRAME_HEADER_LENGTH - this.headLen, chunk.length - i);
          chunk.copy(this.head, this.headLen, i, i + n);
          this.headLen += n;
          i += n;
          if (this.headLen < FRAME_HEADER_LENGTH) return;
          header = Buffer.from(this.head);
          this.headLen = 0;
        }
        this.startFrame(header, out);
        if (this.cur!.left === 0) this.endFrame(out);
        continue;
      }
      const cur = this.cur;
      const n = Math.min(cur.left, chunk.length - i);
      const piece = chunk.subarray(i, i + n);
      if (cur.mode === "forward") out.push(piece);
      else cur.pieces.push(piece);
      cur.left -= n;
      i += n;
      if (cur.left === 0) this.endFrame(out);
    }
  }

  private startFrame(header: Buffer, out: Buffer[]): void {
    const h = readFrameHeader(header);
    const inBlock = this.block !== undefined;
    let mode: Mode;
    if (h.type === FrameType.HEADERS || h.type === FrameType.CONTINUATION) {
      if (h.type === FrameType.HEADERS && inBlock) throw new H2ProtocolError("HEADERS inside a header block");
      if (h.type === FrameType.CONTINUATION && (!inBlock || h.streamId !== this.block!.streamId)) {
        throw new H2ProtocolError("CONTINUATION without a header block in progress on its stream");
      }
      if (h.streamId === 0) throw new H2ProtocolError("header block on stream 0");
      // Checked before the payload is buffered, so a huge frame is refused on its header.
      if ((this.block?.size ?? 0) + h.length > this.maxHeaderBlock + HEADERS_OVERHEAD) {
        throw new H2ProtocolError(`header block larger than ${this.maxHeaderBlock} bytes`);
      }
      mode = "block";
    } else if (inBlock) {
      throw new H2ProtocolError(`frame type ${h.type} inside a header block (RFC 9113 6.10)`);
    } else if (h.type === FrameType.PUSH_PROMISE) {
      throw new H2ProtocolError("PUSH_PROMISE from a client");
    } else if (
      this.intercept !== undefined &&
      (h.type === FrameType.SETTINGS || h.type === FrameType.PING) &&
      h.length <= 64
    ) {
      mode = "control";
    } else {
      mode = "forward";
      out.push(header);
    }
    this.cur = new InFrame(h, mode, header);
  }

  private endFrame(out: Buffer[]): void {
    const cur = this.cur!;
    this.cur = undefined;
    if (cur.mode === "control") {
      const payload = cur.pieces.length === 1 ? cur.pieces[0] : Buffer.concat(cur.pieces);
      if (!this.intercept?.(cur.type, cur.flags, payload)) out.push(cur.header, payload);
    } else if (cur.mode === "block") {
      this.blockFrame(cur, cur.pieces.length === 1 ? cur.pieces[0] : Buffer.concat(cur.pieces), out);
    }
    if (this.stopWhen?.()) this.stopped = true;
  }

  private blockFrame(h: FrameHeader & { header: Buffer }, payload: Buffer, out: Buffer[]): void {
    let fragment = payload;
    if (h.type === FrameType.HEADERS) {
      let pos = 0;
      let padLength = 0;
      if (h.flags & Flag.PADDED) {
        if (payload.length < 1) throw new H2ProtocolError("PADDED HEADERS without a pad length");
        padLength = payload[0];
        pos = 1;
      }
      let priority: Buffer | undefined;
      if (h.flags & Flag.PRIORITY) {
        priority = payload.subarray(pos, pos + 5);
        pos += 5;
      }
      if (pos + padLength > payload.length) throw new H2ProtocolError("HEADERS padding longer than the frame");
      fragment = payload.subarray(pos, payload.length - padLength);
      this.block = {
        streamId: h.streamId,
        endStream: (h.flags & Flag.END_STREAM) !== 0,
        priority,
        fragments: [],
        size: 0,
        raw: [],
      };
    }
    const block = this.block!;
    block.fragments.push(fragment);
    block.size += fragment.length;
    block.raw.push(h.header, payload);
    if (block.size > this.maxHeaderBlock)
      throw new H2ProtocolError(`header block larger than ${this.maxHeaderBlock} bytes`);
    if (h.flags & Flag.END_HEADERS) {
      this.block = undefined;
      this.finishBlock(block, out);
    }
  }

  private finishBlock(block: Block, out: Buffer[]): void {
    const decoded = this.decoder.decode(
      block.fragments.length === 1 ? block.fragments[0] : Buffer.concat(block.fragments),
    );
    // A client opens streams in increasing order; a later block on a known stream is trailers.
    const isRequest = block.streamId > this.lastStreamId;
    if (isRequest) {
      this.lastStreamId = block.streamId;
      this.requests++;
    }
    const fixed = isRequest ? fixRequestAuthority(decoded.fields) : undefined;
    if (!this.rewriting && fixed === undefined) {
      out.push(...block.raw);
      return;
    }
    this.rewriting = true;
    // Without Huffman coding: on a unix socket a few more bytes cost less than coding them.
    const encoded = encodeWithoutIndexing(fixed ?? decoded.fields, decoded.sizeUpdates, { huffman: false });
    out.push(
      ...headerBlockFrames(block.streamId, encoded, {
        endStream: block.endStream,
        priority: block.priority,
        maxFrameSize: this.maxFrameSize,
      }),
    );
  }
}
