// Raw PAX extended-header records for each tar entry, bytes intact; and the tar framing.
//
// tar-stream decodes PAX records as UTF-8 text, which is right for paths but mangles binary
// values, and xattrs are binary: security.capability (a vfs_cap_data struct) has bytes
// >= 0x80 that come out as U+FFFD. This stream sits in front of tar-stream's extractor,
// follows the same block framing (512-byte headers, bodies padded to 512, a PAX "size"
// record overriding the header's size), and queues the raw records of each entry's local
// and global PAX headers, one queue item per entry tar-stream will emit, in order.
// The applier takes one item per entry and cross-checks it with tar-stream's decoded view,
// so a framing disagreement fails the layer instead of moving xattrs to another file.
//
// Knowing the framing, it also decides where the archive ends, the way Go's archive/tar
// does (what containerd and CRI-O unpack with): zero blocks end it and nothing after two of
// them is read; a stream that stops after the last member's data needs neither the padding
// nor the end blocks; one that stops inside a header or a member's data is truncated
// (DataLossError, saying where). Zero blocks and what follows them are not passed on.
import { Transform, type TransformCallback } from "node:stream";
import { DataLossError, InvalidArgumentError } from "../util/errors.js";

const BLOCK = 512;
/** Same bound as tar-stream's: a PAX or GNU long-name body larger than this is refused. */
const MAX_META = 1 << 20;

export type PaxRecords = Map<string, Buffer>;

/** Parses PAX records: "<len> <key>=<value>\n", value as raw bytes. */
export function parsePaxRecords(body: Buffer): PaxRecords {
  const out: PaxRecords = new Map();
  let pos = 0;
  while (pos < body.length) {
    const sp = body.indexOf(0x20, pos);
    if (sp < 0) break;
    const len = Number.parseInt(body.subarray(pos, sp).toString("latin1"), 10);
    if (!Number.isInteger(len) || len <= 0 || pos + len > body.length) break;
    const rec = body.subarray(sp + 1, pos + len - 1); // without the trailing "\n"
    const eq = rec.indexOf(0x3d);
    if (eq < 0) break;
    out.set(rec.subarray(0, eq).toString("utf8"), Buffer.from(rec.subarray(eq + 1)));
    pos += len;
  }
  return out;
}

/** A tar numeric field: NUL/space-terminated octal, or base-256 when the high bit is set. */
function numeric(field: Buffer): number {
  if (field[0] & 0x80) {
    let n = 0;
    for (let i = 1; i < field.length; i++) n = n * 256 + field[i];
    return n;
  }
  const text = field
    .toString("latin1")
    .replace(/[\0 ].*$/s, "")
    .trim();
  return text === "" ? 0 : Number.parseInt(text, 8);
}

/** The name an entry header carries (ustar prefix joined), for messages only. */
function headerName(h: Buffer): string {
  const field = (from: number, to: number) => {
    const f = h.subarray(from, to);
    const nul = f.indexOf(0);
    return f.subarray(0, nul < 0 ? f.length : nul).toString("utf8");
  };
  const name = field(0, 100);
  const ustar = h.subarray(257, 263).toString("latin1") === "ustar\0";
  const prefix = ustar ? field(345, 500) : "";
  return prefix ? `${prefix}/${name}` : name;
}

/** What the bytes being passed belong to: an entry's data, a GNU long name, or padding. */
interface Body {
  what: string;
  total: number;
  left: number;
  pad: number;
}

export class PaxTap extends Transform {
  /** Raw PAX records (global merged under local) per emitted entry, in entry order; undefined: none. */
  readonly entries: (PaxRecords | undefined)[] = [];
  private header: Buffer = Buffer.alloc(0);
  /** the body being passed without looking (entry data, GNU long names) and its padding */
  private body: Body | undefined;
  /** a PAX body being collected: its type, size, remaining bytes, the chunks so far, and its padding */
  private meta: { type: "x" | "g"; size: number; left: number; chunks: Buffer[]; pad: number } | undefined;
  private local: PaxRecords | undefined;
  private global: PaxRecords | undefined;
  /** the last entry's name, for messages */
  private last = "";
  /** consecutive zero blocks seen; two end the archive */
  private zeros = 0;

  /** The next entry's records; call once per entry tar-stream emits. */
  next(): PaxRecords | undefined {
    return this.entries.shift();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    try {
      this.scan(chunk);
    } catch (err) {
      return cb(err as Error);
    }
    cb();
  }

  // The end of the stream as Go's archive/tar reads it (containerd, CRI-O): the stream may
  // stop right after the last member's data, without its padding and without the two zero
  // blocks (umoci 0.4.x writes such layers). The blob was verified by its digest, so nothing
  // is missing; the padding is supplied for tar-stream. A stream cut short inside a header,
  // a PAX header or a member's data is refused as truncated.
  override _flush(cb: TransformCallback): void {
    try {
      this.finish();
    } catch (err) {
      return cb(err as Error);
    }
    cb();
  }

  private finish(): void {
    const after = this.last ? ` after ${JSON.stringify(this.last)}` : " at its start";
    if (this.header.length > 0) {
      // A partial zero block is the end mark cut short (no header starts with a zero byte): nothing is lost.
      if (this.header.every((b) => b === 0)) return;
      throw new DataLossError(`truncated inside a tar header${after}: ${this.header.length} of ${BLOCK} bytes`);
    }
    if (this.meta) {
      const got = this.meta.size - this.meta.left;
      throw new DataLossError(`truncated inside a PAX header${after}: ${got} of ${this.meta.size} bytes`);
    }
    const b = this.body;
    if (!b) return;
    if (b.left > 0) throw new DataLossError(`truncated inside ${b.what}: ${b.total - b.left} of ${b.total} bytes`);
    if (b.pad > 0) this.push(Buffer.alloc(b.pad));
    this.body = undefined;
  }

  private scan(chunk: Buffer): void {
    let pos = 0;
    while (pos < chunk.length) {
      if (this.zeros >= 2) return; // after the end mark: Go's reader never looks, nor does this one
      const b = this.body;
      if (b) {
        const n = Math.min(b.left > 0 ? b.left : b.pad, chunk.length - pos);
        this.push(chunk.subarray(pos, pos + n));
        if (b.left > 0) b.left -= n;
        else b.pad -= n;
        if (b.left === 0 && b.pad === 0) this.body = undefined;
        pos += n;
        continue;
      }
      if (this.meta) {
        const m = this.meta;
        const n = Math.min(m.left, chunk.length - pos);
        const part = chunk.subarray(pos, pos + n);
        this.push(part);
        m.chunks.push(part);
        m.left -= n;
        pos += n;
        if (m.left === 0) {
          const records = parsePaxRecords(Buffer.concat(m.chunks));
          if (m.type === "g") this.global = records;
          else this.local = records;
          this.meta = undefined;
          if (m.pad > 0) this.body = { what: "a PAX header's padding", total: 0, left: 0, pad: m.pad };
        }
        continue;
      }
      const n = Math.min(BLOCK - this.header.length, chunk.length - pos);
      this.header =
        this.header.length === 0
          ? chunk.subarray(pos, pos + n)
          : Buffer.concat([this.header, chunk.subarray(pos, pos + n)]);
      pos += n;
      if (this.header.length === BLOCK) {
        const h = this.header;
        this.header = Buffer.alloc(0);
        this.onHeader(h);
      }
    }
  }

  private onHeader(h: Buffer): void {
    // Zero blocks are the end mark; tar-stream never sees them (it would read on past them).
    if (h.every((b) => b === 0)) {
      this.zeros++;
      return;
    }
    if (this.zeros > 0) {
      throw new InvalidArgumentError(
        `a tar header follows the end-of-archive block after ${JSON.stringify(this.last)}`,
      );
    }
    this.push(h);
    const type = String.fromCharCode(h[156]);
    let size = numeric(h.subarray(124, 136));
    const pad = (BLOCK - (size % BLOCK)) % BLOCK;
    if (type === "x" || type === "g") {
      if (size > MAX_META) throw new InvalidArgumentError(`PAX header of ${size} bytes is too large`);
      if (size === 0) return;
      this.meta = { type, size, left: size, chunks: [], pad };
      return;
    }
    if (type === "L" || type === "K") {
      this.body = { what: `a GNU long name after ${JSON.stringify(this.last)}`, total: size, left: size, pad };
      if (size === 0) this.body = undefined;
      return;
    }
    // An entry. tar-stream merges the global records under the local ones, and only when
    // there is a local header; a "size" record overrides the header's size.
    const local = this.local;
    this.local = undefined;
    const merged = local ? new Map([...(this.global ?? []), ...local]) : undefined;
    const paxSize = merged?.get("size");
    if (paxSize) size = Number.parseInt(paxSize.toString("latin1"), 10);
    this.last = merged?.get("path")?.toString("utf8") ?? headerName(h);
    this.entries.push(merged);
    // tar-stream streams no body for directories.
    if (type === "5" || !(size > 0)) return;
    this.body = {
      what: `the data of ${JSON.stringify(this.last)}`,
      total: size,
      left: size,
      pad: (BLOCK - (size % BLOCK)) % BLOCK,
    };
  }
}

/**
 * The xattrs of an entry from its raw PAX records, checked against tar-stream's decoded
 * `pax` for the same entry (they must be the same records, or the framing disagreed).
 */
export function xattrsFromPax(
  raw: PaxRecords | undefined,
  decoded: Record<string, string> | null | undefined,
  name: string,
): [string, Buffer][] {
  const rawKeys = [...(raw?.keys() ?? [])].sort();
  const decodedKeys = Object.keys(decoded ?? {}).sort();
  const agree =
    rawKeys.length === decodedKeys.length &&
    rawKeys.every((k, i) => k === decodedKeys[i] && raw!.get(k)!.toString("utf8") === decoded![k]);
  if (!agree)
    throw new InvalidArgumentError(`layer entry ${JSON.stringify(name)}: PAX headers could not be read consistently`);
  const out: [string, Buffer][] = [];
  for (const [k, v] of raw ?? []) if (k.startsWith("SCHILY.xattr.")) out.push([k.slice("SCHILY.xattr.".length), v]);
  return out;
}
