// A small blob (an image config) fetched into memory and checked there, so that a pull can
// start unpacking from it at once rather than after its commit to the content store (which
// follows beside the layers; a pull records the image only once it is done). The download's
// retries and the pull's stall watch apply as to any blob.
import { DigestMismatchError, SizeMismatchError, sha256Digest, type BlobSource } from "./content-store.js";
import type { Descriptor } from "./mediatypes.js";
import type { TransferObserver } from "./progress-watch.js";
import { defaultRetry, TransientHttpError, withRetry, type RetryPolicy } from "./retry.js";

export async function fetchSmallBlob(
  source: BlobSource,
  desc: Descriptor,
  opts: {
    retry?: RetryPolicy;
    signal: AbortSignal;
    observer: TransferObserver;
    /** byte counts as they arrive, as a content-store ingest tells them */
    onProgress?: (done: number, total: number) => void;
  },
): Promise<Buffer> {
  return withRetry({ ...(opts.retry ?? defaultRetry), signal: opts.signal }, async () => {
    const t = opts.observer.begin(desc.digest, 0, desc.size);
    try {
      opts.onProgress?.(0, desc.size);
      const got = await source(0, opts.signal);
      const chunks: Buffer[] = [];
      let n = 0;
      for await (const chunk of got.stream) {
        n += chunk.length;
        if (n > desc.size)
          throw new SizeMismatchError(`size mismatch for ${desc.digest}: got more than ${desc.size} bytes`);
        chunks.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length));
        t.progress(n);
        opts.onProgress?.(n, desc.size);
      }
      if (n < desc.size) throw new TransientHttpError(`blob ${desc.digest} ended at ${n} of ${desc.size} bytes`);
      const body = Buffer.concat(chunks, n);
      const digest = sha256Digest(body);
      if (digest !== desc.digest)
        throw new DigestMismatchError(`digest mismatch: expected ${desc.digest} got ${digest}`);
      return body;
    } finally {
      t.end();
    }
  });
}
