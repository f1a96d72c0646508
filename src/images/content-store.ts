// Content-addressed blob store, laid out like containerd's:
//   <root>/blobs/sha256/<hex>     committed, verified blobs (read-only to everyone else)
//   <root>/ingest/<hex>/data       a download in progress; its length is the resume offset
//   <root>/ingest/<hex>/ref        JSON {digest, size} the ingest is expected to produce
// A blob reaches blobs/ only by rename after its digest and size checked out and the data
// was fsynced; the directory is fsynced after the rename (DESIGN.md principle 3). A killed
// download leaves its ingest behind and the next ingest of that digest resumes it, re-hashing
// the prefix already on disk. A download whose every caller gave up (cancelled, or its pull
// stalled past the progress timeout) is aborted and its ingest removed: nothing half-written
// stays behind for a pull nobody waits for.
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, type ReadStream } from "node:fs";
import { lstat, mkdir, open, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { InternalError, InvalidArgumentError, NotFoundError } from "../util/errors.js";
import { backoffDelay, defaultRetry, isTransient, type RetryPolicy } from "./retry.js";
import { TransferFanout, type TransferObserver } from "./progress-watch.js";
import { SharedFlight } from "./shared-flight.js";

/** The data did not hash to the digest it was fetched by; nothing of it was kept. */
export class DigestMismatchError extends InternalError {}
/** The data was longer or shorter than its descriptor said; nothing of it was kept. */
export class SizeMismatchError extends InternalError {}

export interface Expected {
  digest: string;
  size: number;
}

/**
 * Opens the blob's bytes starting at `offset` (the caller asks for a Range). Returns the
 * offset the data really starts at: `offset`, or 0 when the source ignored the range.
 */
export type BlobSource = (
  offset: number,
  signal?: AbortSignal,
) => Promise<{ offset: number; stream: AsyncIterable<Uint8Array> | Iterable<Uint8Array> }>;

export interface IngestOptions {
  /** the download's byte counts (told to the caller that started it) */
  onProgress?: (done: number, total: number) => void;
  retry?: RetryPolicy;
  /** this caller gives up when it aborts; the download stops when every caller has */
  signal?: AbortSignal;
  /** watches the download's requests while this caller waits for it (a pull's progress timeout) */
  observer?: TransferObserver;
}

const digestRe = /^sha256:([a-f0-9]{64})$/;

export function hexOf(digest: string): string {
  const m = digestRe.exec(digest);
  if (!m) throw new InvalidArgumentError(`unsupported digest ${JSON.stringify(digest)} (only sha256 is supported)`);
  return m[1];
}

export function sha256Digest(data: Buffer | string): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export class ContentStore {
  readonly blobsDir: string;
  readonly ingestDir: string;
  private readonly flights = new SharedFlight<void>();
  /** each running download's requests, as the pulls waiting on it watch them */
  private readonly transfers = new Map<string, TransferFanout>();

  /** `root` is the content directory, e.g. <state>/content. */
  constructor(readonly root: string) {
    this.blobsDir = join(root, "blobs", "sha256");
    this.ingestDir = join(root, "ingest");
  }

  async init(): Promise<void> {
    await mkdir(this.blobsDir, { recursive: true });
    await mkdir(this.ingestDir, { recursive: true });
  }

  path(digest: string): string {
    return join(this.blobsDir, hexOf(digest));
  }

  /** Size of a committed blob, or undefined. */
  async size(digest: string): Promise<number | undefined> {
    try {
      return (await stat(this.path(digest))).size;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw err;
    }
  }

  async has(digest: string): Promise<boolean> {
    return (await this.size(digest)) !== undefined;
  }

  async read(digest: string): Promise<Buffer> {
    try {
      return await readFile(this.path(digest));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") throw new NotFoundError(`content ${digest} not found`);
      throw err;
    }
  }

  async readJson<T>(digest: string): Promise<T> {
    return JSON.parse((await this.read(digest)).toString("utf8")) as T;
  }

  /** Where a running download of `digest` writes (growing-blob.ts follows it). */
  ingestDataPath(digest: string): string {
    return join(this.ingestDir, hexOf(digest), "data");
  }

  openRead(digest: string): ReadStream {
    return createReadStream(this.path(digest), { highWaterMark: 1 << 20 });
  }

  /** Stores an in-memory blob (manifests, configs); verifies it when `expected` is given. */
  async writeBuffer(data: Buffer, expected?: Partial<Expected>): Promise<string> {
    const digest = sha256Digest(data);
    if (expected?.digest && expected.digest !== digest) {
      throw new DigestMismatchError(`digest mismatch: expected ${expected.digest} got ${digest}`);
    }
    if (expected?.size !== undefined && expected.size !== data.length) {
      throw new SizeMismatchError(`size mismatch for ${digest}: expected ${expected.size} bytes got ${data.length}`);
    }
    await this.ingest({ digest, size: data.length }, async () => ({ offset: 0, stream: [data] }));
    return digest;
  }

  /**
   * Brings blob `expected` into the store from `source`, resuming an earlier partial ingest.
   * Concurrent ingests of one digest share a single download. Transient source failures are
   * retried from the current offset with a Range request (bounded by `retry`). A digest or
   * size mismatch removes the ingest and throws DigestMismatchError / SizeMismatchError.
   * A caller whose `signal` aborts leaves at once (CANCELLED, or the signal's typed reason);
   * when the last one leaves, the download is aborted and its ingest removed before that
   * caller's promise settles.
   */
  async ingest(expected: Expected, source: BlobSource, opts: IngestOptions = {}): Promise<void> {
    const hex = hexOf(expected.digest);
    let fanout = this.transfers.get(hex);
    if (!fanout) this.transfers.set(hex, (fanout = new TransferFanout(expected.digest, expected.size)));
    const unwatch = opts.observer && fanout.watch(opts.observer);
    const f = fanout;
    try {
      return await this.flights.do(hex, (signal) => this.doIngest(hex, expected, source, opts, signal, f), {
        signal: opts.signal,
        what: `download of blob ${expected.digest}`,
      });
    } finally {
      unwatch?.();
      if (!this.flights.has(hex) && !f.watched && this.transfers.get(hex) === f) this.transfers.delete(hex);
    }
  }

  private async doIngest(
    hex: string,
    expected: Expected,
    source: BlobSource,
    opts: IngestOptions,
    signal: AbortSignal,
    fanout: TransferFanout,
  ): Promise<void> {
    const final = join(this.blobsDir, hex);
    const existing = await this.size(expected.digest);
    if (existing === expected.size) {
      // A crash between the commit's rename and the ingest's removal leaves the ingest behind.
      await rm(join(this.ingestDir, hex), { recursive: true, force: true });
      return;
    }
    if (existing !== undefined) {
      throw new SizeMismatchError(
        `stored blob ${expected.digest} is ${existing} bytes, descriptor says ${expected.size}`,
      );
    }
    const dir = join(this.ingestDir, hex);
    const dataPath = join(dir, "data");
    await mkdir(dir, { recursive: true });
    const refPath = join(dir, "ref");
    let ref: Expected | undefined;
    try {
      ref = JSON.parse(await readFile(refPath, "utf8")) as Expected;
    } catch {
      ref = undefined;
    }
    if (!ref || ref.size !== expected.size || ref.digest !== expected.digest) {
      await rm(dataPath, { force: true });
      await writeFile(refPath, JSON.stringify(expected));
    }
    // r+ (not a+): O_APPEND would ignore the explicit write positions after a truncate.
    const fh = await open(dataPath, "r+").catch((err: NodeJS.ErrnoException) => {
      if (err.code === "ENOENT") return open(dataPath, "w+");
      throw err;
    });
    let ok = false;
    try {
      let offset = (await fh.stat()).size;
      if (offset > expected.size) {
        await fh.truncate(0);
        offset = 0;
      }
      // Re-hash what an earlier attempt left, so the final digest covers every byte.
      let hash = createHash("sha256");
      if (offset > 0) {
        for await (const chunk of createReadStream(dataPath, { start: 0, end: offset - 1 })) {
          hash.update(chunk as Buffer);
        }
      }
      opts.onProgress?.(offset, expected.size);
      const retry = opts.retry ?? defaultRetry;
      for (let attempt = 0; offset < expected.size;) {
        fanout.open(offset);
        let stream: unknown;
        // A body that stalls ends only when destroyed: the abort must reach it.
        const onAbort = () => (stream as { destroy?: (e: unknown) => void } | undefined)?.destroy?.(signal.reason);
        signal.addEventListener("abort", onAbort, { once: true });
        try {
          signal.throwIfAborted();
          const got = await source(offset, signal);
          stream = got.stream;
          signal.throwIfAborted();
          if (got.offset !== offset) {
            if (got.offset !== 0) throw new InternalError(`source resumed at ${got.offset}, asked for ${offset}`);
            await fh.truncate(0);
            offset = 0;
            hash = createHash("sha256");
            // Watchers learn of the restart before any byte of it is written: a reader following
            // the file (growing-blob.ts) must not read past what this attempt wrote.
            fanout.open(0);
          }
          for await (const chunk of got.stream) {
            if (offset + chunk.length > expected.size) {
              throw new SizeMismatchError(`size mismatch for ${expected.digest}: got more than ${expected.size} bytes`);
            }
            // write(2) may write less than asked when the disk is nearly full, without an error:
            // loop until every byte is down (the next call then fails with ENOSPC).
            for (let done = 0; done < chunk.length;) {
              const { bytesWritten } = await fh.write(chunk, done, chunk.length - done, offset + done);
              done += bytesWritten;
            }
            hash.update(chunk);
            offset += chunk.length;
            fanout.progress(offset);
            opts.onProgress?.(offset, expected.size);
          }
          if (offset < expected.size) {
            // The body ended early (connection dropped cleanly): resume from here.
            throw Object.assign(new Error(`blob ${expected.digest} ended at ${offset} of ${expected.size} bytes`), {
              code: "ECONNRESET",
            });
          }
        } catch (err) {
          if (signal.aborted) throw signal.reason;
          if (!isTransient(err) || ++attempt >= retry.attempts) throw err;
          fanout.close();
          await sleep(backoffDelay(retry, attempt - 1), undefined, { signal }).catch(() => signal.throwIfAborted());
        } finally {
          signal.removeEventListener("abort", onAbort);
          fanout.close();
        }
      }
      const got = `sha256:${hash.digest("hex")}`;
      if (got !== expected.digest) {
        await fh.close().catch(() => {});
        await rm(dir, { recursive: true, force: true });
        throw new DigestMismatchError(`digest mismatch: expected ${expected.digest} got ${got}`);
      }
      await fh.sync();
      // The hash covers what we meant to write; the size on disk proves it was written.
      const onDisk = (await fh.stat()).size;
      if (onDisk !== expected.size) {
        throw new InternalError(`ingest of ${expected.digest}: ${onDisk} bytes on disk, expected ${expected.size}`);
      }
      ok = true;
    } catch (err) {
      // Aborted: nobody waits for this blob any more, so its partial data is not kept to resume.
      if (err instanceof SizeMismatchError || signal.aborted) {
        await fh.close().catch(() => {});
        await rm(dir, { recursive: true, force: true });
      }
      if (signal.aborted) throw signal.reason;
      throw err;
    } finally {
      await fh.close().catch(() => {});
    }
    if (ok) {
      await rename(dataPath, final);
      await fsyncDir(this.blobsDir);
      await rm(dir, { recursive: true, force: true });
    }
  }

  async delete(digest: string): Promise<void> {
    await rm(this.path(digest), { force: true });
  }

  /** Every committed blob. */
  async list(): Promise<{ digest: string; size: number }[]> {
    const out: { digest: string; size: number }[] = [];
    for (const name of await readdir(this.blobsDir)) {
      if (!/^[a-f0-9]{64}$/.test(name)) continue;
      const st = await lstat(join(this.blobsDir, name));
      out.push({ digest: `sha256:${name}`, size: st.size });
    }
    return out;
  }

  /** Ingests in progress or interrupted: digest, bytes so far, and when data last arrived (ms). */
  async ingests(): Promise<{ digest: string; offset: number; total?: number; updatedAt: number }[]> {
    const out: { digest: string; offset: number; total?: number; updatedAt: number }[] = [];
    for (const name of await readdir(this.ingestDir)) {
      if (!/^[a-f0-9]{64}$/.test(name)) continue;
      let offset = 0;
      let total: number | undefined;
      let updatedAt = 0;
      try {
        const st = await stat(join(this.ingestDir, name, "data"));
        offset = st.size;
        updatedAt = st.mtimeMs;
      } catch {
        offset = 0;
        updatedAt = await stat(join(this.ingestDir, name)).then(
          (st) => st.mtimeMs,
          () => 0,
        );
      }
      try {
        total = (JSON.parse(await readFile(join(this.ingestDir, name, "ref"), "utf8")) as Expected).size;
      } catch {
        total = undefined;
      }
      out.push({ digest: `sha256:${name}`, offset, total, updatedAt });
    }
    return out;
  }

  /** Whether an ingest of `digest` is running in this process now. */
  isIngesting(digest: string): boolean {
    return this.flights.has(hexOf(digest));
  }

  /**
   * Removes interrupted ingests that received no data for `maxAgeMs` (a pull that never came
   * back for them), and leftovers of an abort that a crash cut short. Running ingests stay.
   * Returns the digests removed.
   */
  async pruneIngests(maxAgeMs: number, now = Date.now()): Promise<string[]> {
    const removed: string[] = [];
    for (const i of await this.ingests()) {
      if (now - i.updatedAt < maxAgeMs || this.isIngesting(i.digest)) continue;
      await this.abortIngest(i.digest);
      removed.push(i.digest);
    }
    for (const name of await readdir(this.ingestDir)) {
      if (name.startsWith(".removed-")) await rm(join(this.ingestDir, name), { recursive: true, force: true });
    }
    return removed;
  }

  async abortIngest(digest: string): Promise<void> {
    const dir = join(this.ingestDir, hexOf(digest));
    const doomed = join(this.ingestDir, `.removed-${randomBytes(4).toString("hex")}`);
    try {
      await rename(dir, doomed);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
      throw err;
    }
    await rm(doomed, { recursive: true, force: true });
  }

  /** Bytes and inodes used by committed blobs and ingests. */
  async usage(): Promise<{ size: number; inodes: number }> {
    let size = 0;
    let inodes = 0;
    for (const dir of [this.blobsDir, this.ingestDir]) {
      const walk = async (p: string): Promise<void> => {
        const st = await lstat(p);
        size += st.blocks * 512;
        inodes++;
        if (st.isDirectory()) for (const n of await readdir(p)) await walk(join(p, n));
      };
      await walk(dir).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== "ENOENT") throw err;
      });
    }
    return { size, inodes };
  }
}
