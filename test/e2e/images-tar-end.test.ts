// Where a layer's tar stream ends, read as Go's archive/tar reads it (containerd, CRI-O):
// a stream that stops right after the last member's data (no padding, no end blocks, as
// umoci 0.4.x writes layers) unpacks; one cut short inside a header or a member's data is
// refused as DATA_LOSS saying what was short. Hand-made tar streams, cut at chosen bytes.
import { test, beforeEach, afterEach } from "node:test";
import assert from "node:assert/strict";
import { createReadStream } from "node:fs";
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { gzipSync } from "node:zlib";
import { spawnSync } from "node:child_process";
import { applyLayer } from "../../src/images/unpack.js";
import { DataLossError, InvalidArgumentError, statusCodeOf, GrpcCode } from "../../src/util/errors.js";
import { paxHeader, sha256, tarOf } from "../helpers/images.js";

let root: string;
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), "berth-tar-end-"));
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});
async function fresh(): Promise<void> {
  await rm(root, { recursive: true, force: true });
  await mkdir(root);
}

const LAYER = "sha256:" + "ab".repeat(32);
const compressions = ["none", "gzip", "zstd"] as const;

function compress(raw: Buffer, c: (typeof compressions)[number]): Buffer {
  if (c === "gzip") return gzipSync(raw);
  if (c === "zstd") {
    const r = spawnSync("zstd", ["-q", "-c"], { input: raw });
    if (r.status !== 0) throw new Error(`zstd failed: ${r.stderr}`);
    return r.stdout;
  }
  return raw;
}

/** Applies `raw` (compressed as asked), fed in `chunk`-byte pieces so framing spans chunks. */
function apply(raw: Buffer, c: (typeof compressions)[number] = "none", chunk = 0) {
  const blob = compress(raw, c);
  const parts: Buffer[] = [];
  if (chunk > 0) for (let i = 0; i < blob.length; i += chunk) parts.push(blob.subarray(i, i + chunk));
  else parts.push(blob);
  return applyLayer(Readable.from(parts), root, { whiteouts: "native", expectedDiffId: sha256(raw), layer: LAYER });
}

// Layout of tarOf([dir/, dir/a (5 bytes), dir/b (700 bytes)]):
//   0 dir/ header | 512 a header | 1024 a data (5) + padding | 1536 b header | 2048 b data (700) + padding
//   3072 two zero blocks, 4096 end
const B_DATA = 2048;
async function sample(): Promise<Buffer> {
  const t = await tarOf([
    { name: "dir/", type: "directory" },
    { name: "dir/a", content: "hello" },
    { name: "dir/b", content: "b".repeat(700) },
  ]);
  assert.equal(t.length, 4096, "the sample's layout is as the offsets above say");
  assert.equal(t.subarray(B_DATA, B_DATA + 700).toString(), "b".repeat(700));
  return t;
}

async function assertApplied(): Promise<void> {
  assert.equal(await readFile(join(root, "dir/a"), "utf8"), "hello");
  assert.equal(await readFile(join(root, "dir/b"), "utf8"), "b".repeat(700));
}

test("a layer without the two end blocks unpacks", async () => {
  const t = await sample();
  for (const c of compressions) {
    await fresh();
    const r = await apply(t.subarray(0, 3072), c);
    assert.equal(r.size, 3072);
    assert.equal(r.diffId, sha256(t.subarray(0, 3072)));
    await assertApplied();
  }
});

test("a layer ending right after the last member's data (no padding, no end blocks, as umoci writes) unpacks", async () => {
  const t = await sample();
  const cut = t.subarray(0, B_DATA + 700);
  for (const c of compressions) {
    for (const chunk of [0, 100, 511]) {
      await fresh();
      const r = await apply(cut, c, chunk);
      // The diff ID is that of the bytes as published, not of a padded copy.
      assert.equal(r.diffId, sha256(cut));
      assert.equal(r.size, B_DATA + 700);
      await assertApplied();
    }
  }
});

test("a layer ending inside the last member's padding, or after one end block, unpacks", async () => {
  const t = await sample();
  for (const end of [B_DATA + 701, B_DATA + 1000, 3072 + 512, 3072 + 100]) {
    await fresh();
    await apply(t.subarray(0, end));
    await assertApplied();
  }
});

test("an empty stream is an empty layer", async () => {
  const r = await apply(Buffer.alloc(0));
  assert.equal(r.size, 0);
  assert.deepEqual(await readdir(root), []);
});

async function assertTruncated(p: Promise<unknown>, what: RegExp): Promise<void> {
  await assert.rejects(p, (err: Error) => {
    assert.ok(err instanceof DataLossError, `DataLossError, got ${err.name}: ${err.message}`);
    assert.equal(statusCodeOf(err), GrpcCode.DATA_LOSS);
    assert.ok(err.message.startsWith(`layer ${LAYER}: `), err.message);
    assert.match(err.message, what);
    return true;
  });
}

test("a layer cut inside a member's data is DATA_LOSS naming the layer, the member and the bytes", async () => {
  const t = await sample();
  for (const c of compressions) {
    for (const chunk of [0, 64]) {
      await fresh();
      await assertTruncated(
        apply(t.subarray(0, B_DATA + 300), c, chunk),
        /inside the data of "dir\/b": 300 of 700 bytes/,
      );
    }
  }
  // Cut right after the header: none of the data arrived.
  await assertTruncated(apply(t.subarray(0, B_DATA)), /inside the data of "dir\/b": 0 of 700 bytes/);
});

test("a layer cut inside a header is DATA_LOSS saying where", async () => {
  const t = await sample();
  await assertTruncated(apply(t.subarray(0, 1536 + 200)), /inside a tar header after "dir\/a": 200 of 512 bytes/);
  await assertTruncated(apply(t.subarray(0, 100), "gzip"), /inside a tar header at its start: 100 of 512 bytes/);
});

test("a layer cut inside a PAX header is DATA_LOSS", async () => {
  const pax = paxHeader([["SCHILY.xattr.user.k", Buffer.from("v".repeat(300))]]);
  const raw = Buffer.concat([pax.subarray(0, 512 + 100)]);
  await assertTruncated(apply(raw), /inside a PAX header at its start: 100 of \d+ bytes/);
});

test("a truncated gzip or zstd stream is DATA_LOSS", async () => {
  const t = await sample();
  for (const c of ["gzip", "zstd"] as const) {
    const blob = compress(t, c);
    const cut = blob.subarray(0, blob.length - 20);
    await assert.rejects(
      applyLayer(Readable.from([cut]), root, { whiteouts: "native", layer: LAYER }),
      (err: Error) => {
        assert.ok(err instanceof DataLossError, `${c}: DataLossError, got ${err.name}: ${err.message}`);
        assert.match(err.message, new RegExp(`^layer ${LAYER}: (gzip|zstd) stream: `));
        return true;
      },
    );
    await fresh();
  }
});

test("a header after an end block is refused; what follows two end blocks is not read", async () => {
  const t = await sample();
  const extra = await tarOf([{ name: "late", content: "x" }]);
  // One zero block, then more entries: Go refuses this (invalid header).
  await assert.rejects(
    apply(Buffer.concat([t.subarray(0, 3072 + 512), extra])),
    (err: Error) => err instanceof InvalidArgumentError && /follows the end-of-archive block/.test(err.message),
  );
  await fresh();
  // Two zero blocks end the archive: later entries are not applied (nor is trailing garbage read).
  const r = await apply(Buffer.concat([t, extra, Buffer.from("garbage")]));
  await assertApplied();
  assert.deepEqual((await readdir(root)).sort(), ["dir"]);
  assert.equal(r.size, t.length + extra.length + 7);
});

test("a corrupt header checksum is INVALID_ARGUMENT, not UNKNOWN", async () => {
  const t = Buffer.from(await sample());
  t[512 + 148] = "7".charCodeAt(0); // dir/a's checksum field
  t[512 + 149] = "7".charCodeAt(0);
  await assert.rejects(apply(t), (err: Error) => {
    assert.ok(err instanceof InvalidArgumentError, `${err.name}: ${err.message}`);
    assert.match(err.message, new RegExp(`^layer ${LAYER}: tar: `));
    return true;
  });
});

test("a truncated layer read from a file (as the content store serves it) fails the apply, never the process", async () => {
  // The last entry's stream is destroyed while its parents are still being created: its
  // error must reach the caller, not escape as an unhandled 'error' event.
  const t = await tarOf([{ name: "a/b/c/big", content: "z".repeat(2000) }]);
  const file = join(root, "..", `${root.split("/").pop()}.blob`);
  for (const c of compressions) {
    await writeFile(file, compress(t.subarray(0, 512 + 1000), c));
    await fresh();
    try {
      await assertTruncated(
        applyLayer(createReadStream(file), root, { whiteouts: "native", layer: LAYER }),
        /inside the data of "a\/b\/c\/big": 1000 of 2000 bytes/,
      );
    } finally {
      await rm(file, { force: true });
    }
  }
});
