// An image config fetched into memory (src/images/small-blob.ts): checked by digest and size,
// a body cut short retried, byte counts told as they arrive, the pull's watch told of each try.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { test } from "node:test";
import { DigestMismatchError, SizeMismatchError, type BlobSource } from "../../../src/images/content-store.js";
import type { TransferObserver } from "../../../src/images/progress-watch.js";
import { fetchSmallBlob } from "../../../src/images/small-blob.js";

const body = Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux", rootfs: { diff_ids: [] } }));
const desc = {
  mediaType: "application/vnd.oci.image.config.v1+json",
  digest: `sha256:${createHash("sha256").update(body).digest("hex")}`,
  size: body.length,
};
const retry = { attempts: 3, baseDelayMs: 1, maxDelayMs: 1 };

/** A source answering each request with the next of `bodies` (split in two chunks). */
function source(...bodies: Buffer[]): { source: BlobSource; requests: () => number } {
  let n = 0;
  return {
    source: async () => {
      const b = bodies[Math.min(n++, bodies.length - 1)]!;
      return { offset: 0, stream: [b.subarray(0, 10), b.subarray(10)] };
    },
    requests: () => n,
  };
}

function watcher(): { observer: TransferObserver; begun: number; ended: number } {
  const w = {
    begun: 0,
    ended: 0,
    observer: {
      begin: () => {
        w.begun++;
        return { progress() {}, end: () => void w.ended++ };
      },
    },
  };
  return w;
}

test("the config comes back whole and checked; its byte counts and its transfer are told", async () => {
  const s = source(body);
  const w = watcher();
  const counts: number[] = [];
  const got = await fetchSmallBlob(s.source, desc, {
    retry,
    signal: new AbortController().signal,
    observer: w.observer,
    onProgress: (done, total) => {
      assert.equal(total, body.length);
      counts.push(done);
    },
  });
  assert.deepEqual(got, body);
  assert.deepEqual(counts, [0, 10, body.length]);
  assert.deepEqual([w.begun, w.ended], [1, 1]);
});

test("a body cut short is fetched again", async () => {
  const s = source(body.subarray(0, 20), body);
  const w = watcher();
  const got = await fetchSmallBlob(s.source, desc, {
    retry,
    signal: new AbortController().signal,
    observer: w.observer,
  });
  assert.deepEqual(got, body);
  assert.equal(s.requests(), 2);
  assert.deepEqual([w.begun, w.ended], [2, 2]);
});

test("a wrong digest or a longer body fails at once, without another request", async () => {
  const bad = Buffer.from(body);
  bad[5] ^= 0xff;
  const s = source(bad);
  const opts = { retry, signal: new AbortController().signal, observer: watcher().observer };
  await assert.rejects(fetchSmallBlob(s.source, desc, opts), DigestMismatchError);
  assert.equal(s.requests(), 1);
  const long = source(Buffer.concat([body, Buffer.from("x")]));
  await assert.rejects(fetchSmallBlob(long.source, desc, opts), SizeMismatchError);
  assert.equal(long.requests(), 1);
});
