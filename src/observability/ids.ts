// Trace and span ids, cheaply. crypto.randomBytes() for every id cost several µs per call in
// Node 20 (a trace id and its root span's id: about 8 µs, measured), more than the rest of a
// traced status read. Ids are cut from a pool of random bytes refilled 4 KiB at a time, and
// end in a per-process counter, so no two ids of one berthd are ever the same; they start with
// random hex, so the short prefixes `berth trace` accepts stay as distinct as before.
import { randomFillSync } from "node:crypto";

const POOL_BYTES = 4096;
const pool = Buffer.alloc(POOL_BYTES);
let used = POOL_BYTES;
let counter = 0;

/** `n` random bytes from the pool, as hex. */
function randomHex(n: number): string {
  if (used + n > POOL_BYTES) {
    randomFillSync(pool);
    used = 0;
  }
  const hex = pool.toString("hex", used, used + n);
  used += n;
  return hex;
}

/** The next counter value as 8 hex digits; never 0, so an id is never all zeros. */
function nextCount(): string {
  counter = (counter + 1) >>> 0;
  if (counter === 0) counter = 1;
  return counter.toString(16).padStart(8, "0");
}

/** A 16-byte trace id (32 hex): 12 random bytes, then the counter. */
export function newTraceId(): string {
  return randomHex(12) + nextCount();
}

/** An 8-byte span id (16 hex): 4 random bytes, then the counter. */
export function newSpanId(): string {
  return randomHex(4) + nextCount();
}
