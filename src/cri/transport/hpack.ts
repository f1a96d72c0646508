// HPACK (RFC 7541): a decoder that keeps the dynamic table exactly as the peer's encoder does,
// and an encoder that never touches any dynamic table (static-table indexes and literals
// without indexing). That pair is what the :authority rewriter needs: it mirrors the client's
// encoder while it forwards header blocks untouched, and re-encodes a block without changing the
// server decoder's table once it must change a field.
//
// Names and values are latin1 strings: one char per octet, so any byte survives unchanged.

import { HuffmanError, huffmanDecode, huffmanEncode, huffmanLength } from "./hpack-huffman.js";

export class HpackError extends Error {}

/** How a field was represented on the wire (RFC 7541 6.1-6.2). */
export type FieldKind = "indexed" | "incremental" | "without" | "never";

export interface HeaderField {
  name: string;
  value: string;
  kind: FieldKind;
}

export interface DecodedBlock {
  /** Dynamic table size updates found at the start of the block, in order. */
  sizeUpdates: number[];
  fields: HeaderField[];
}

/** RFC 7541 Appendix A. Index 1 is STATIC[0]. */
export const STATIC_TABLE: readonly (readonly [string, string])[] = [
  [":authority", ""],
  [":method", "GET"],
  [":method", "POST"],
  [":path", "/"],
  [":path", "/index.html"],
  [":scheme", "http"],
  [":scheme", "https"],
  [":status", "200"],
  [":status", "204"],
  [":status", "206"],
  [":status", "304"],
  [":status", "400"],
  [":status", "404"],
  [":status", "500"],
  ["accept-charset", ""],
  ["accept-encoding", "gzip, deflate"],
  ["accept-language", ""],
  ["accept-ranges", ""],
  ["accept", ""],
  ["access-control-allow-origin", ""],
  ["age", ""],
  ["allow", ""],
  ["authorization", ""],
  ["cache-control", ""],
  ["content-disposition", ""],
  ["content-encoding", ""],
  ["content-language", ""],
  ["content-length", ""],
  ["content-location", ""],
  ["content-range", ""],
  ["content-type", ""],
  ["cookie", ""],
  ["date", ""],
  ["etag", ""],
  ["expect", ""],
  ["expires", ""],
  ["from", ""],
  ["host", ""],
  ["if-match", ""],
  ["if-modified-since", ""],
  ["if-none-match", ""],
  ["if-range", ""],
  ["if-unmodified-since", ""],
  ["last-modified", ""],
  ["link", ""],
  ["location", ""],
  ["max-forwards", ""],
  ["proxy-authenticate", ""],
  ["proxy-authorization", ""],
  ["range", ""],
  ["referer", ""],
  ["refresh", ""],
  ["retry-after", ""],
  ["server", ""],
  ["set-cookie", ""],
  ["strict-transport-security", ""],
  ["transfer-encoding", ""],
  ["user-agent", ""],
  ["vary", ""],
  ["via", ""],
  ["www-authenticate", ""],
];

// For the encoder: "name\0value" -> index of an exact match, name -> first index with that name.
const STATIC_EXACT = new Map<string, number>();
const STATIC_NAME = new Map<string, number>();
STATIC_TABLE.forEach(([name, value], i) => {
  if (!STATIC_EXACT.has(`${name}\0${value}`)) STATIC_EXACT.set(`${name}\0${value}`, i + 1);
  if (!STATIC_NAME.has(name)) STATIC_NAME.set(name, i + 1);
});

/** RFC 7541 4.1: an entry's size is its name and value length plus 32. */
export function entrySize(name: string, value: string): number {
  return name.length + value.length + 32;
}

/** The dynamic table of one direction of one connection (RFC 7541 2.3.2, 4). */
export class DynamicTable {
  /** Newest first: entries[0] is index 62. */
  private entries: [string, string][] = [];
  size = 0;

  constructor(public maxSize: number) {}

  get length(): number {
    return this.entries.length;
  }

  /** Index 1-based over static then dynamic table, as in a header block. */
  get(index: number): [string, string] {
    if (index >= 1 && index <= STATIC_TABLE.length) return STATIC_TABLE[index - 1] as [string, string];
    const e = this.entries[index - STATIC_TABLE.length - 1];
    if (index < 1 || e === undefined) throw new HpackError(`index ${index} is outside the header tables`);
    return e;
  }

  add(name: string, value: string): void {
    const size = entrySize(name, value);
    // An entry larger than the table empties it and is not added (4.4).
    this.evictTo(this.maxSize - size);
    if (size <= this.maxSize) {
      this.entries.unshift([name, value]);
      this.size += size;
    }
  }

  resize(maxSize: number): void {
    this.maxSize = maxSize;
    this.evictTo(maxSize);
  }

  private evictTo(limit: number): void {
    while (this.size > Math.max(limit, 0) && this.entries.length > 0) {
      const e = this.entries.pop()!;
      this.size -= entrySize(e[0], e[1]);
    }
  }
}

/** Reads one HPACK integer with an N-bit prefix (5.1) at `pos`; returns [value, next pos]. */
export function readInteger(buf: Uint8Array, pos: number, prefixBits: number): [number, number] {
  const c = new Cursor(buf, pos);
  const value = c.integer(prefixBits);
  return [value, c.pos];
}

/**
 * A read position in one header block. The decoder reads integers and strings through it, not
 * through functions returning [value, next position]: every request's header block is decoded
 * while berthd's code is still interpreted (the first calls after a start), where each such
 * tuple is an array allocated and destructured through the iterator protocol.
 */
class Cursor {
  constructor(
    readonly buf: Uint8Array,
    public pos: number,
  ) {}

  integer(prefixBits: number): number {
    const buf = this.buf;
    let pos = this.pos;
    if (pos >= buf.length) throw new HpackError("truncated integer");
    const max = (1 << prefixBits) - 1;
    let value = buf[pos++] & max;
    if (value < max) {
      this.pos = pos;
      return value;
    }
    let shift = 0;
    for (;;) {
      if (pos >= buf.length) throw new HpackError("truncated integer");
      const b = buf[pos++];
      value += (b & 0x7f) * 2 ** shift;
      shift += 7;
      // Nothing in a header block needs more than 2^31; longer encodings are garbage or an attack.
      if (value > 0x7fffffff) throw new HpackError("integer too large");
      if ((b & 0x80) === 0) {
        this.pos = pos;
        return value;
      }
    }
  }

  string(): string {
    const buf = this.buf;
    if (this.pos >= buf.length) throw new HpackError("truncated string");
    const huffman = (buf[this.pos] & 0x80) !== 0;
    const len = this.integer(7);
    const start = this.pos;
    const end = start + len;
    if (end > buf.length) throw new HpackError("string runs past the end of the header block");
    this.pos = end;
    const raw = buf.subarray(start, end);
    if (!huffman) return Buffer.from(raw.buffer, raw.byteOffset, raw.length).toString("latin1");
    try {
      return huffmanDecode(raw);
    } catch (err) {
      if (err instanceof HuffmanError) throw new HpackError(err.message);
      throw err;
    }
  }
}

export interface DecoderOptions {
  /** SETTINGS_HEADER_TABLE_SIZE the decoding side announced: the ceiling for size updates. */
  maxTableSize?: number;
  /** Refuse a header list larger than this (sum of name + value + 32 per field). */
  maxListSize?: number;
}

/** Decodes header blocks of one direction of a connection, keeping its dynamic table. */
export class HpackDecoder {
  readonly table: DynamicTable;
  private readonly maxTableSize: number;
  private readonly maxListSize: number;

  constructor(opts: DecoderOptions = {}) {
    this.maxTableSize = opts.maxTableSize ?? 4096;
    this.maxListSize = opts.maxListSize ?? 1 << 20;
    this.table = new DynamicTable(this.maxTableSize);
  }

  /** Decodes one complete header block and applies its table changes. Throws HpackError. */
  decode(block: Uint8Array): DecodedBlock {
    const fields: HeaderField[] = [];
    const sizeUpdates: number[] = [];
    let listSize = 0;
    const c = new Cursor(block, 0);
    while (c.pos < block.length) {
      const b = block[c.pos];
      let name: string;
      let value: string;
      let kind: FieldKind;
      if (b & 0x80) {
        const index = c.integer(7);
        if (index === 0) throw new HpackError("indexed field with index 0");
        const entry = this.table.get(index);
        name = entry[0];
        value = entry[1];
        kind = "indexed";
      } else if ((b & 0xe0) === 0x20) {
        // A size update is only allowed before the first field of a block (4.2).
        if (fields.length > 0) throw new HpackError("dynamic table size update after a header field");
        const size = c.integer(5);
        if (size > this.maxTableSize) throw new HpackError(`table size update ${size} over ${this.maxTableSize}`);
        this.table.resize(size);
        sizeUpdates.push(size);
        continue;
      } else {
        const incremental = (b & 0xc0) === 0x40;
        kind = incremental ? "incremental" : b & 0x10 ? "never" : "without";
        const index = c.integer(incremental ? 6 : 4);
        name = index === 0 ? c.string() : this.table.get(index)[0];
        value = c.string();
        if (incremental) this.table.add(name, value);
      }
      listSize += entrySize(name, value);
      if (listSize > this.maxListSize) throw new HpackError(`header list larger than ${this.maxListSize} bytes`);
      fields.push({ name, value, kind });
    }
    return { sizeUpdates, fields };
  }
}

/** Appends an HPACK integer with an N-bit prefix; `first` holds the representation's high bits. */
export function writeInteger(out: number[], first: number, prefixBits: number, value: number): void {
  const max = (1 << prefixBits) - 1;
  if (value < max) {
    out.push(first | value);
    return;
  }
  out.push(first | max);
  value -= max;
  while (value >= 128) {
    out.push((value % 128) | 0x80);
    value = Math.floor(value / 128);
  }
  out.push(value);
}

function writeString(out: number[], s: string, huffman: boolean): void {
  if (huffman && huffmanLength(s) < s.length) {
    const coded = huffmanEncode(s);
    writeInteger(out, 0x80, 7, coded.length);
    for (const b of coded) out.push(b);
    return;
  }
  writeInteger(out, 0, 7, s.length);
  for (let i = 0; i < s.length; i++) out.push(s.charCodeAt(i) & 0xff);
}

/**
 * Encodes fields without reading or changing any dynamic table: an exact static-table match as
 * an index, everything else as a literal without indexing (static name index when there is one),
 * and "never indexed" fields as never indexed again (RFC 7541 6.2.3 asks intermediaries to keep
 * that). Size updates go first. Huffman-codes a string when that is shorter.
 */
export function encodeWithoutIndexing(
  fields: readonly { name: string; value: string; kind?: FieldKind }[],
  sizeUpdates: readonly number[] = [],
  opts: { huffman?: boolean } = {},
): Buffer {
  const huffman = opts.huffman ?? true;
  const out: number[] = [];
  for (const size of sizeUpdates) writeInteger(out, 0x20, 5, size);
  for (const f of fields) {
    const never = f.kind === "never";
    const exact = never ? undefined : STATIC_EXACT.get(`${f.name}\0${f.value}`);
    if (exact !== undefined) {
      writeInteger(out, 0x80, 7, exact);
      continue;
    }
    const nameIndex = STATIC_NAME.get(f.name) ?? 0;
    writeInteger(out, never ? 0x10 : 0x00, 4, nameIndex);
    if (nameIndex === 0) writeString(out, f.name, huffman);
    writeString(out, f.value, huffman);
  }
  return Buffer.from(out);
}
