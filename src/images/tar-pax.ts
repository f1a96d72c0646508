// Raw PAX extended-header records for each tar entry, bytes intact.
//
// tar-stream decodes PAX records as UTF-8 text, which is right for paths but mangles binary
// values, and xattrs are binary: security.capability (a vfs_cap_data struct) has bytes
// >= 0x80 that come out as U+FFFD. This pass-through stream sits in front of tar-stream's
// extractor, follows the same block framing (512-byte headers, bodies padded to 512, a PAX
// "size" record overriding the header's size), and queues the raw records of each entry's
// local and global PAX headers, one queue item per entry tar-stream will emit, in order.
// The applier takes one item per entry and cross-checks it with tar-stream's decoded view,
// so a framing disagreement fails the layer instead of moving xattrs to another file.
import { Transform, type TransformCallback } from "node:stream";
import { InvalidArgumentError } from "../util/errors.js";

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

export class PaxTap extends Transform {
  /** Raw PAX records (global merged under local) per emitted entry, in entry order; undefined: none. */
  readonly entries: (PaxRecords | undefined)[] = [];
  private header = Buffer.alloc(0);
  /** body bytes (and padding) to pass without looking */
  private skip = 0;
  /** a PAX body being collected: its type, remaining bytes, the chunks so far, and its padding */
  private meta: { type: "x" | "g"; left: number; chunks: Buffer[]; pad: number } | undefined;
  private local: PaxRecords | undefined;
  private global: PaxRecords | undefined;

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
    cb(null, chunk);
  }

  private scan(chunk: Buffer): void {
    let pos = 0;
    while (pos < chunk.length) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, chunk.length - pos);
        this.skip -= n;
        pos += n;
        continue;
      }
      if (this.meta) {
        const n = Math.min(this.meta.left, chunk.length - pos);
        this.meta.chunks.push(chunk.subarray(pos, pos + n));
        this.meta.left -= n;
        pos += n;
        if (this.meta.left === 0) {
          const records = parsePaxRecords(Buffer.concat(this.meta.chunks));
          if (this.meta.type === "g") this.global = records;
          else this.local = records;
          this.skip = this.meta.pad;
          this.meta = undefined;
        }
        continue;
      }
      const n = Math.min(BLOCK - this.header.length, chunk.length - pos);
      this.header = Buffer.concat([this.header, chunk.subarray(pos, pos + n)]);
      pos += n;
      if (this.header.length === BLOCK) {
        const h = this.header;
        this.header = Buffer.alloc(0);
        this.onHeader(h);
      }
    }
  }

  private onHeader(h: Buffer): void {
    if (h.every((b) => b === 0)) return; // end-of-archive blocks
    const type = String.fromCharCode(h[156]);
    let size = numeric(h.subarray(124, 136));
    const pad = (BLOCK - (size % BLOCK)) % BLOCK;
    if (type === "x" || type === "g") {
      if (size > MAX_META) throw new InvalidArgumentError(`layer: PAX header of ${size} bytes is too large`);
      if (size === 0) return;
      this.meta = { type, left: size, chunks: [], pad };
      return;
    }
    if (type === "L" || type === "K") {
      this.skip = size + pad;
      return;
    }
    // An entry. tar-stream merges the global records under the local ones, and only when
    // there is a local header; a "size" record overrides the header's size.
    const local = this.local;
    this.local = undefined;
    const merged = local ? new Map([...(this.global ?? []), ...local]) : undefined;
    const paxSize = merged?.get("size");
    if (paxSize) size = Number.parseInt(paxSize.toString("latin1"), 10);
    this.entries.push(merged);
    // tar-stream streams no body for directories.
    if (type === "5" || !(size > 0)) return;
    this.skip = size + ((BLOCK - (size % BLOCK)) % BLOCK);
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
