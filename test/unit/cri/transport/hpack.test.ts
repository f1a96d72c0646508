// HPACK (src/cri/transport/hpack*.ts) against RFC 7541: the Huffman code table, the Appendix C
// examples (integers, single representations, request sequences with and without Huffman coding,
// response sequences with evictions in a 256-octet table), size updates, and refusal of
// malformed blocks.

import assert from "node:assert/strict";
import { test } from "node:test";
import {
  EOS,
  HUFFMAN_CODES,
  HUFFMAN_LENGTHS,
  huffmanDecode,
  huffmanEncode,
} from "../../../../src/cri/transport/hpack-huffman.js";
import {
  HpackDecoder,
  HpackError,
  encodeWithoutIndexing,
  readInteger,
  writeInteger,
  type HeaderField,
} from "../../../../src/cri/transport/hpack.js";

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ""), "hex");
const pairs = (fields: HeaderField[]) => fields.map((f) => [f.name, f.value]);

test("Huffman code table: codes of the RFC 7541 Appendix B table", () => {
  assert.equal(HUFFMAN_LENGTHS.length, 257);
  // [symbol, code, length] rows copied from the table, at least one per code length.
  const rows: [number, number, number][] = [
    [0, 0x1ff8, 13],
    [1, 0x7fffd8, 23],
    [2, 0xfffffe2, 28],
    [9, 0xffffea, 24],
    [10, 0x3ffffffc, 30],
    [13, 0x3ffffffd, 30],
    [22, 0x3ffffffe, 30],
    [31, 0xffffffb, 28],
    [32, 0x14, 6],
    [33, 0x3f8, 10],
    [35, 0xffa, 12],
    [38, 0xf8, 8],
    [39, 0x7fa, 11],
    [47, 0x18, 6],
    [48, 0x0, 5],
    [58, 0x5c, 7],
    [60, 0x7ffc, 15],
    [92, 0x7fff0, 19],
    [94, 0x3ffc, 14],
    [116, 0x9, 5],
    [122, 0x7b, 7],
    [126, 0x1ffd, 13],
    [127, 0xffffffc, 28],
    [128, 0xfffe6, 20],
    [129, 0x3fffd2, 22],
    [153, 0x1fffdc, 21],
    [192, 0x3ffffe0, 26],
    [195, 0x7fff1, 19],
    [199, 0x1ffffec, 25],
    [203, 0x7ffffde, 27],
    [220, 0xffffffd, 28],
    [249, 0xffffffe, 28],
    [254, 0x7fffff0, 27],
    [255, 0x3ffffee, 26],
    [EOS, 0x3fffffff, 30],
  ];
  for (const [sym, code, len] of rows) {
    assert.equal(HUFFMAN_LENGTHS[sym], len, `length of symbol ${sym}`);
    assert.equal(HUFFMAN_CODES[sym], code, `code of symbol ${sym}`);
  }
  // A prefix code: Kraft's sum of a complete code is exactly 1.
  assert.equal(
    HUFFMAN_LENGTHS.reduce((s, l) => s + 2 ** -l, 0),
    1,
  );
});

test("Huffman: every octet value round-trips, strings of the RFC examples decode", () => {
  const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i)).toString("latin1");
  assert.equal(huffmanDecode(huffmanEncode(all)), all);
  for (let i = 0; i < 256; i++) {
    const s = String.fromCharCode(i).repeat((i % 5) + 1);
    assert.equal(huffmanDecode(huffmanEncode(s)), s);
  }
  assert.equal(huffmanDecode(hex("f1e3 c2e5 f23a 6ba0 ab90 f4ff")), "www.example.com");
  assert.deepEqual(huffmanEncode("www.example.com"), hex("f1e3 c2e5 f23a 6ba0 ab90 f4ff"));
  assert.equal(huffmanDecode(hex("a8eb 1064 9cbf")), "no-cache");
  assert.equal(huffmanDecode(hex("25a8 49e9 5ba9 7d7f")), "custom-key");
  assert.equal(huffmanDecode(Buffer.alloc(0)), "");
});

test("Huffman: EOS, long padding and padding that is not ones are refused (RFC 7541 5.2)", () => {
  assert.throws(() => huffmanDecode(hex("ffff ffff")), /EOS/); // 30 ones = EOS
  assert.throws(() => huffmanDecode(hex("ff")), /padding longer/); // 8 bits of padding
  assert.throws(() => huffmanDecode(hex("00")), /padding is not/); // '0' (00000) then 000
  assert.equal(huffmanDecode(hex("1f")), "a"); // 'a' is 00011, then 3 bits of padding
});

test("integers: RFC 7541 C.1 examples and the overflow guard", () => {
  const enc = (first: number, n: number, v: number) => {
    const out: number[] = [];
    writeInteger(out, first, n, v);
    return Buffer.from(out);
  };
  assert.deepEqual(enc(0, 5, 10), hex("0a"));
  assert.deepEqual(enc(0, 5, 1337), hex("1f9a0a"));
  assert.deepEqual(enc(0, 8, 42), hex("2a"));
  assert.deepEqual(readInteger(hex("1f9a0a"), 0, 5), [1337, 3]);
  assert.deepEqual(readInteger(hex("ea"), 0, 5), [10, 1]); // high bits belong to the representation
  assert.throws(() => readInteger(hex("1f9a"), 0, 5), HpackError);
  assert.throws(() => readInteger(hex("1fffffffffff0f"), 0, 5), /too large/);
});

test("C.2: one field of each representation", () => {
  const d = new HpackDecoder();
  let r = d.decode(hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572"));
  assert.deepEqual(r.fields, [{ name: "custom-key", value: "custom-header", kind: "incremental" }]);
  assert.equal(d.table.size, 55);
  const d2 = new HpackDecoder();
  r = d2.decode(hex("040c 2f73 616d 706c 652f 7061 7468"));
  assert.deepEqual(r.fields, [{ name: ":path", value: "/sample/path", kind: "without" }]);
  assert.equal(d2.table.length, 0);
  r = d2.decode(hex("1008 7061 7373 776f 7264 0673 6563 7265 74"));
  assert.deepEqual(r.fields, [{ name: "password", value: "secret", kind: "never" }]);
  assert.equal(d2.table.length, 0);
  r = d2.decode(hex("82"));
  assert.deepEqual(r.fields, [{ name: ":method", value: "GET", kind: "indexed" }]);
});

const REQ1 = [
  [":method", "GET"],
  [":scheme", "http"],
  [":path", "/"],
  [":authority", "www.example.com"],
];
const REQ2 = [...REQ1, ["cache-control", "no-cache"]];
const REQ3 = [
  [":method", "GET"],
  [":scheme", "https"],
  [":path", "/index.html"],
  [":authority", "www.example.com"],
  ["custom-key", "custom-value"],
];

for (const [section, blocks] of [
  [
    "C.3 requests without Huffman",
    [
      "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
      "8286 84be 5808 6e6f 2d63 6163 6865",
      "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
    ],
  ],
  [
    "C.4 requests with Huffman",
    [
      "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
      "8286 84be 5886 a8eb 1064 9cbf",
      "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
    ],
  ],
] as const) {
  test(`${section}: three requests on one connection share the dynamic table`, () => {
    const d = new HpackDecoder();
    assert.deepEqual(pairs(d.decode(hex(blocks[0])).fields), REQ1);
    assert.equal(d.table.size, 57);
    assert.deepEqual(pairs(d.decode(hex(blocks[1])).fields), REQ2);
    assert.equal(d.table.size, 110);
    assert.deepEqual(pairs(d.decode(hex(blocks[2])).fields), REQ3);
    assert.equal(d.table.size, 164);
    assert.deepEqual(d.table.get(62), ["custom-key", "custom-value"]);
    assert.deepEqual(d.table.get(63), ["cache-control", "no-cache"]);
    assert.deepEqual(d.table.get(64), [":authority", "www.example.com"]);
  });
}

const RESP1 = [
  [":status", "302"],
  ["cache-control", "private"],
  ["date", "Mon, 21 Oct 2013 20:13:21 GMT"],
  ["location", "https://www.example.com"],
];
const RESP2 = [[":status", "307"], ...RESP1.slice(1)];
const RESP3 = [
  [":status", "200"],
  ["cache-control", "private"],
  ["date", "Mon, 21 Oct 2013 20:13:22 GMT"],
  ["location", "https://www.example.com"],
  ["content-encoding", "gzip"],
  ["set-cookie", "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"],
];

for (const [section, blocks] of [
  [
    "C.5 responses without Huffman",
    [
      `4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133
       2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d`,
      "4803 3330 37c1 c0bf",
      `88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d
       54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049
       5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e 3d31`,
    ],
  ],
  [
    "C.6 responses with Huffman",
    [
      `4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6
       2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3`,
      "4883 640e ffc1 c0bf",
      `88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab
       77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f
       9587 3160 65c0 03ed 4ee5 b106 3d50 07`,
    ],
  ],
] as const) {
  test(`${section}: a 256-octet table evicts as in the RFC`, () => {
    const d = new HpackDecoder({ maxTableSize: 256 });
    assert.deepEqual(pairs(d.decode(hex(blocks[0])).fields), RESP1);
    assert.equal(d.table.size, 222);
    assert.equal(d.table.length, 4);
    // :status 302 is evicted to make room for :status 307.
    assert.deepEqual(pairs(d.decode(hex(blocks[1])).fields), RESP2);
    assert.equal(d.table.size, 222);
    assert.deepEqual(d.table.get(62), [":status", "307"]);
    assert.deepEqual(d.table.get(65), ["cache-control", "private"]);
    // Several evictions while one block is decoded.
    assert.deepEqual(pairs(d.decode(hex(blocks[2])).fields), RESP3);
    assert.equal(d.table.size, 215);
    assert.equal(d.table.length, 3);
    assert.deepEqual(d.table.get(62), ["set-cookie", RESP3[5][1]]);
    assert.deepEqual(d.table.get(63), ["content-encoding", "gzip"]);
    assert.deepEqual(d.table.get(64), ["date", "Mon, 21 Oct 2013 20:13:22 GMT"]);
    assert.throws(() => d.table.get(65), /outside/);
  });
}

test("dynamic table size updates: shrink evicts, zero empties, over the limit or mid-block is refused", () => {
  const d = new HpackDecoder();
  d.decode(hex("8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d")); // adds :authority (57)
  d.decode(hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572")); // adds 55
  assert.equal(d.table.length, 2);
  // Shrink to 60: only the newest entry (55) fits.
  let r = d.decode(hex("3f1d be")); // size update 60 (31 + 29), then index 62
  assert.deepEqual(r.sizeUpdates, [60]);
  assert.deepEqual(pairs(r.fields), [["custom-key", "custom-header"]]);
  assert.equal(d.table.length, 1);
  // Two updates in a row (0 then 4096) empty the table and allow it to grow again.
  r = d.decode(hex("20 3fe11f 82"));
  assert.deepEqual(r.sizeUpdates, [0, 4096]);
  assert.equal(d.table.length, 0);
  assert.throws(() => d.decode(hex("be")), /outside/);
  assert.throws(() => d.decode(hex("3fe21f")), /over 4096/); // 4097
  assert.throws(() => d.decode(hex("82 20")), /after a header field/);
  // An entry larger than the whole table empties it and is not added.
  const small = new HpackDecoder({ maxTableSize: 64 });
  small.decode(hex("4003 6162 6303 7879 7a")); // abc: xyz (38)
  assert.equal(small.table.length, 1);
  small.decode(Buffer.concat([hex("4003 6162 6320"), Buffer.alloc(32, 0x61)])); // 3+32+32 = 67 > 64
  assert.equal(small.table.length, 0);
  assert.equal(small.table.size, 0);
});

test("malformed blocks are refused with HpackError", () => {
  const bad = [
    "80", // index 0
    "bf", // index 63, empty dynamic table
    "ff80808008", // huge index
    "4005 6162", // name runs past the end
    "0003 616263", // literal name, then no value
    "4083 ffff ff", // Huffman name that is 24 bits of padding
  ];
  for (const b of bad) assert.throws(() => new HpackDecoder().decode(hex(b)), HpackError, b);
  // A header list over the cap (an indexed-field bomb) is refused.
  const big = new HpackDecoder({ maxListSize: 10_000 });
  const block = Buffer.concat([hex("4001 61 7fe9 06"), Buffer.alloc(1000, 0x62), Buffer.alloc(20, 0xbe)]);
  assert.throws(() => big.decode(block), /header list larger/);
});

test("encodeWithoutIndexing: static matches indexed, the rest literal, never-indexed kept, no table changes", () => {
  const fields: HeaderField[] = [
    { name: ":method", value: "POST", kind: "indexed" },
    { name: ":scheme", value: "http", kind: "incremental" },
    { name: ":path", value: "/runtime.v1.RuntimeService/Version", kind: "incremental" },
    { name: ":authority", value: "%2Frun%2Fberth.sock", kind: "incremental" },
    { name: "content-type", value: "application/grpc", kind: "without" },
    { name: "x-secret", value: "s3cr3t", kind: "never" },
    { name: "authorization", value: "Bearer x", kind: "never" },
    { name: "te", value: "trailers", kind: "incremental" },
  ];
  for (const huffman of [true, false]) {
    const block = encodeWithoutIndexing(fields, [1024], { huffman });
    const d = new HpackDecoder();
    const r = d.decode(block);
    assert.deepEqual(r.sizeUpdates, [1024]);
    assert.deepEqual(pairs(r.fields), pairs(fields));
    assert.deepEqual(
      r.fields.map((f) => f.kind),
      ["indexed", "indexed", "without", "without", "without", "never", "never", "without"],
    );
    assert.equal(d.table.length, 0, "nothing was added to the decoder's table");
  }
  // Octets outside ASCII survive.
  const odd = String.fromCharCode(0, 0x7f, 0x80, 0xff);
  const r = new HpackDecoder().decode(encodeWithoutIndexing([{ name: "x-bin", value: odd }]));
  assert.equal(r.fields[0].value, odd);
});
