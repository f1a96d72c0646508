// SPDY/3 header blocks: the uncompressed layout and the per-connection zlib contexts.
//
// Each direction of a connection is ONE zlib stream: every SYN_STREAM, SYN_REPLY and HEADERS
// block continues the compressor state of the previous one and ends with a Z_SYNC_FLUSH, and
// the receiver keeps one inflate context for the whole connection. Node only offers a
// persistent zlib context as an asynchronous stream, so a block is pushed through it with
// write + flush(Z_SYNC_FLUSH) and the output is read once the flush completes. Calls are
// serialised so blocks never interleave inside the shared context.
import zlib from "node:zlib";
import { SPDY3_DICTIONARY } from "./dictionary.js";

/** Header names are lower case on the wire; a name may carry several values. */
export type SpdyHeaders = Map<string, string[]>;

export function headersFrom(obj: Record<string, string | string[]>): SpdyHeaders {
  const h: SpdyHeaders = new Map();
  for (const [k, v] of Object.entries(obj)) h.set(k.toLowerCase(), Array.isArray(v) ? v : [v]);
  return h;
}

/** Serialises a header block: u32 count, then (u32 len, name, u32 len, NUL-joined values). */
export function encodeHeaderBlock(headers: SpdyHeaders): Buffer {
  const parts: Buffer[] = [];
  const count = Buffer.alloc(4);
  count.writeUInt32BE(headers.size);
  parts.push(count);
  for (const [name, values] of headers) {
    const n = Buffer.from(name.toLowerCase(), "utf8");
    const v = Buffer.from(values.join("\0"), "utf8");
    const nl = Buffer.alloc(4);
    nl.writeUInt32BE(n.length);
    const vl = Buffer.alloc(4);
    vl.writeUInt32BE(v.length);
    parts.push(nl, n, vl, v);
  }
  return Buffer.concat(parts);
}

export function decodeHeaderBlock(block: Buffer): SpdyHeaders {
  const h: SpdyHeaders = new Map();
  let off = 0;
  const u32 = (): number => {
    if (off + 4 > block.length) throw new Error("truncated SPDY header block");
    const n = block.readUInt32BE(off);
    off += 4;
    return n;
  };
  const bytes = (n: number): string => {
    if (off + n > block.length) throw new Error("truncated SPDY header block");
    const s = block.toString("utf8", off, off + n);
    off += n;
    return s;
  };
  const count = u32();
  for (let i = 0; i < count; i++) {
    const name = bytes(u32()).toLowerCase();
    const values = bytes(u32()).split("\0");
    h.set(name, [...(h.get(name) ?? []), ...values]);
  }
  return h;
}

/** One direction's zlib context. */
class ZlibContext {
  private readonly z: zlib.Deflate | zlib.Inflate;
  private tail: Promise<unknown> = Promise.resolve();
  private failure: Error | undefined;

  constructor(kind: "deflate" | "inflate") {
    this.z =
      kind === "deflate"
        ? zlib.createDeflate({ dictionary: SPDY3_DICTIONARY, level: zlib.constants.Z_BEST_COMPRESSION })
        : zlib.createInflate({ dictionary: SPDY3_DICTIONARY });
    this.z.on("error", (err: Error) => {
      this.failure = err;
    });
  }

  /** Pushes `input` through the shared context and returns what a sync flush produces. */
  run(input: Buffer): Promise<Buffer> {
    const next = this.tail.then(
      () =>
        new Promise<Buffer>((resolve, reject) => {
          if (this.failure) return reject(this.failure);
          // After an error zlib never calls the flush callback: fail the block from here.
          const onError = (err: Error) => reject(err);
          this.z.once("error", onError);
          this.z.write(input);
          this.z.flush(zlib.constants.Z_SYNC_FLUSH, () => {
            this.z.off("error", onError);
            if (this.failure) return reject(this.failure);
            const out: Buffer[] = [];
            for (let chunk = this.z.read() as Buffer | null; chunk; chunk = this.z.read() as Buffer | null)
              out.push(chunk);
            resolve(Buffer.concat(out));
          });
        }),
    );
    this.tail = next.catch(() => undefined);
    return next;
  }

  close(): void {
    this.z.close();
  }
}

export class HeaderCompressor {
  private readonly ctx = new ZlibContext("deflate");
  compress(headers: SpdyHeaders): Promise<Buffer> {
    return this.ctx.run(encodeHeaderBlock(headers));
  }
  close(): void {
    this.ctx.close();
  }
}

export class HeaderDecompressor {
  private readonly ctx = new ZlibContext("inflate");
  async decompress(block: Buffer): Promise<SpdyHeaders> {
    return decodeHeaderBlock(await this.ctx.run(block));
  }
  close(): void {
    this.ctx.close();
  }
}
