// gRPC's length-prefixed messages (gRPC over HTTP/2, "Length-Prefixed-Message"): one byte
// Compressed-Flag, four bytes big-endian Message-Length, then the message. A request's DATA
// frames carry these back to back, split anywhere: MessageReader puts them together again.

/** The 5-byte prefix before every message. */
export const PREFIX_BYTES = 5;

/** One message as it arrived: `compressed` says its bytes are in the call's grpc-encoding. */
export interface RawMessage {
  compressed: boolean;
  payload: Buffer;
}

/** A message whose declared length is over the receiver's limit (RESOURCE_EXHAUSTED). */
export class MessageTooLargeError extends Error {
  constructor(
    readonly length: number,
    readonly limit: number,
  ) {
    super(`Received message larger than max (${length} vs. ${limit})`);
  }
}

/** A compressed flag other than 0 or 1: not a gRPC message stream (INTERNAL). */
export class BadFrameError extends Error {}

/**
 * Large payloads framed lately, by the payload: a serializer that answers an unchanged poll with
 * the same bytes (ListContainers of 1,000 containers, cri/response-encoder.ts) gets the same
 * framed buffer, not another copy of a few hundred KiB for the GC to collect. Entries go with
 * their payload.
 */
const framedLarge = new WeakMap<Uint8Array, Buffer>();
const LARGE = 32 << 10;

/** `payload` with its prefix, in one buffer (one DATA write). Never changed once made. */
export function encodeMessage(payload: Uint8Array): Buffer {
  const large = payload.length >= LARGE;
  if (large) {
    const kept = framedLarge.get(payload);
    if (kept) return kept;
  }
  const out = Buffer.allocUnsafe(PREFIX_BYTES + payload.length);
  out[0] = 0;
  out.writeUInt32BE(payload.length, 1);
  out.set(payload, PREFIX_BYTES);
  if (large) framedLarge.set(payload, out);
  return out;
}

/**
 * Reassembles messages from DATA chunks. The common case, a whole message in one chunk, costs
 * a subarray; anything split is copied once into a buffer of the message's size. A declared
 * length over `maxLength` throws before any of its bytes are kept.
 */
export class MessageReader {
  private prefix: Buffer | undefined;
  private prefixHave = 0;
  private body: Buffer | undefined;
  private bodyHave = 0;
  private compressed = false;

  constructor(private readonly maxLength: number) {}

  /** True between messages: nothing of a message is held. */
  get atBoundary(): boolean {
    return this.prefix === undefined && this.body === undefined;
  }

  /** The messages completed by `chunk`, in order. */
  push(chunk: Buffer): RawMessage[] {
    const out: RawMessage[] = [];
    let off = 0;
    while (off < chunk.length) {
      if (this.body !== undefined) {
        const n = Math.min(this.body.length - this.bodyHave, chunk.length - off);
        chunk.copy(this.body, this.bodyHave, off, off + n);
        this.bodyHave += n;
        off += n;
        if (this.bodyHave === this.body.length) {
          out.push({ compressed: this.compressed, payload: this.body });
          this.body = undefined;
        }
        continue;
      }
      let header: Buffer;
      if (this.prefix === undefined && chunk.length - off >= PREFIX_BYTES) {
        header = chunk.subarray(off, off + PREFIX_BYTES);
        off += PREFIX_BYTES;
      } else {
        this.prefix ??= Buffer.allocUnsafe(PREFIX_BYTES);
        const n = Math.min(PREFIX_BYTES - this.prefixHave, chunk.length - off);
        chunk.copy(this.prefix, this.prefixHave, off, off + n);
        this.prefixHave += n;
        off += n;
        if (this.prefixHave < PREFIX_BYTES) break;
        header = this.prefix;
        this.prefix = undefined;
        this.prefixHave = 0;
      }
      const flag = header[0]!;
      if (flag > 1) throw new BadFrameError(`gRPC message with compressed flag ${flag}`);
      const length = header.readUInt32BE(1);
      if (length > this.maxLength) throw new MessageTooLargeError(length, this.maxLength);
      const compressed = flag === 1;
      if (chunk.length - off >= length) {
        out.push({ compressed, payload: chunk.subarray(off, off + length) });
        off += length;
      } else {
        this.compressed = compressed;
        this.body = Buffer.allocUnsafe(length);
        this.bodyHave = 0;
      }
    }
    return out;
  }
}
