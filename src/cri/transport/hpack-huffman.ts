// The HPACK Huffman code (RFC 7541 Appendix B). The code is canonical: ordering the 257
// symbols by (code length, symbol value) and counting up gives exactly the codes of the RFC's
// table (0x1ff8 for symbol 0, 0x18 for '/', 0x3fffffff for EOS, ...), so only the lengths are
// written down here and the codes are derived. The unit tests check codes from the table and the
// Appendix C vectors.

/** Code length in bits of symbols 0..255 and EOS (256), rows of 16 (the last row is EOS). */
// prettier-ignore
const LENGTHS: readonly number[] = [
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, // 0x00
  28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, // 0x10
  6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, //         ' ' .. '/'
  5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, //             '0' .. '?'
  13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, //               '@' .. 'O'
  7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, //            'P' .. '_'
  15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, //               '`' .. 'o'
  6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, //           'p' .. DEL
  20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, // 0x80
  24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, // 0x90
  22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, // 0xa0
  21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, // 0xb0
  26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, // 0xc0
  19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, // 0xd0
  20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, // 0xe0
  26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, // 0xf0
  30, //                                                             EOS
];

export const EOS = 256;
const MAX_LEN = 30;

/** codes[s] is symbol s's code, right-aligned in `LENGTHS[s]` bits. */
export const HUFFMAN_CODES: readonly number[] = (() => {
  const order = LENGTHS.map((_, s) => s).sort((a, b) => LENGTHS[a] - LENGTHS[b] || a - b);
  const codes = new Array<number>(LENGTHS.length);
  let code = 0;
  let len = LENGTHS[order[0]];
  for (const s of order) {
    code *= 2 ** (LENGTHS[s] - len);
    len = LENGTHS[s];
    codes[s] = code++;
  }
  return codes;
})();
export const HUFFMAN_LENGTHS = LENGTHS;

// Canonical decoding tables: for each length L, the first code of that length, how many codes
// have it, and where its symbols start in SORTED.
const FIRST = new Array<number>(MAX_LEN + 1).fill(0);
const COUNT = new Array<number>(MAX_LEN + 1).fill(0);
const OFFSET = new Array<number>(MAX_LEN + 1).fill(0);
const SORTED = LENGTHS.map((_, s) => s).sort((a, b) => LENGTHS[a] - LENGTHS[b] || a - b);
for (const s of SORTED) COUNT[LENGTHS[s]]++;
for (let L = 1, at = 0; L <= MAX_LEN; L++) {
  OFFSET[L] = at;
  at += COUNT[L];
  if (COUNT[L] > 0) FIRST[L] = HUFFMAN_CODES[SORTED[OFFSET[L]]];
}

export class HuffmanError extends Error {}

/**
 * Decodes a Huffman-coded string literal into latin1 (one char per octet). Refuses what RFC 7541
 * 5.2 makes a decoding error: an EOS symbol, padding longer than 7 bits, padding not all ones.
 */
export function huffmanDecode(src: Uint8Array): string {
  const out = Buffer.allocUnsafe(Math.ceil((src.length * 8) / 5));
  let n = 0;
  let code = 0;
  let len = 0;
  for (let i = 0; i < src.length; i++) {
    const byte = src[i];
    for (let bit = 7; bit >= 0; bit--) {
      code = code * 2 + ((byte >> bit) & 1);
      len++;
      const idx = code - FIRST[len];
      if (COUNT[len] > 0 && idx >= 0 && idx < COUNT[len]) {
        const sym = SORTED[OFFSET[len] + idx];
        if (sym === EOS) throw new HuffmanError("Huffman string contains EOS");
        out[n++] = sym;
        code = 0;
        len = 0;
      } else if (len >= MAX_LEN) {
        throw new HuffmanError("invalid Huffman code");
      }
    }
  }
  // What is left must be a prefix of EOS (all ones) of at most 7 bits.
  if (len > 7) throw new HuffmanError("Huffman padding longer than 7 bits");
  if (code !== 2 ** len - 1) throw new HuffmanError("Huffman padding is not a prefix of EOS");
  return out.toString("latin1", 0, n);
}

/** Huffman-codes a latin1 string (one octet per char), padded with the EOS prefix. */
export function huffmanEncode(s: string): Buffer {
  let bits = 0;
  for (let i = 0; i < s.length; i++) bits += LENGTHS[s.charCodeAt(i) & 0xff];
  const out = Buffer.alloc(Math.ceil(bits / 8));
  let acc = 0; // pending bits, fewer than 8 after each flush
  let accLen = 0;
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const sym = s.charCodeAt(i) & 0xff;
    let len = LENGTHS[sym];
    const code = HUFFMAN_CODES[sym];
    // Feed the code 8 bits at a time from its top so `acc` stays a small integer.
    while (len > 0) {
      const take = Math.min(len, 8);
      const part = Math.floor(code / 2 ** (len - take)) & ((1 << take) - 1);
      acc = (acc << take) | part;
      accLen += take;
      len -= take;
      while (accLen >= 8) {
        out[n++] = (acc >> (accLen - 8)) & 0xff;
        accLen -= 8;
        acc &= (1 << accLen) - 1;
      }
    }
  }
  if (accLen > 0) out[n++] = ((acc << (8 - accLen)) | ((1 << (8 - accLen)) - 1)) & 0xff;
  return out;
}

/** The Huffman-coded length in octets of a latin1 string. */
export function huffmanLength(s: string): number {
  let bits = 0;
  for (let i = 0; i < s.length; i++) bits += LENGTHS[s.charCodeAt(i) & 0xff];
  return Math.ceil(bits / 8);
}
