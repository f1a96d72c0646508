// A blob's bytes while its download is still writing them, so that a pull unpacks a layer as
// it arrives rather than after it has all arrived (the 2 MiB pull was download, then unpack).
//
// The reader follows the ingest's data file (content-store.ts) and never reads past the offset
// the download has acknowledged: the content store tells its transfer observers each offset only
// after the write of the bytes before it finished, so no read sees a write half done. When the
// download starts over from 0 (a source that ignored the Range of a retry), the store begins a
// new transfer at 0 first, and the reader waits until the new attempt has written past where it
// is: what it already gave out came from the earlier attempt of the same digest. Nothing read
// here is trusted: the unpacker checks the uncompressed bytes against the config's diff ID, and
// a pull commits the unpacked layer only once the download's own digest check passed.
//
// complete() says the blob is committed (the whole file may be read, from the ingest file's
// inode or the committed blob); fail() ends the reader with the download's error.
import { open, type FileHandle } from "node:fs/promises";
import { Readable } from "node:stream";
import { InternalError } from "../util/errors.js";
import type { TransferHandle, TransferObserver } from "./progress-watch.js";

const CHUNK = 1 << 20;

export class GrowingBlobReader extends Readable implements TransferObserver {
  private fh: FileHandle | undefined;
  private pos = 0;
  /** bytes of the data file that the download has written (acknowledged) */
  private written = 0;
  /** the blob is committed: every byte may be read */
  private whole = false;
  private wanted = false;
  private pumping = false;
  /** something changed while a pump was in flight: look again when it ends */
  private again = false;

  constructor(
    private readonly paths: { ingest: string; blob: string },
    private readonly size: number,
  ) {
    super({ highWaterMark: CHUNK });
    // An unread reader whose download fails is destroyed with that error: nobody need listen.
    this.on("error", () => {});
  }

  /** The download's bytes are in the store. */
  complete(): void {
    this.whole = true;
    this.kick();
  }

  /** The download failed or was given up: the reader ends with its error. */
  fail(err: unknown): void {
    this.destroy(err instanceof Error ? err : new InternalError(String(err)));
  }

  // TransferObserver: a request opens at `done` (the file holds that much of this attempt),
  // then reports each offset written.
  begin(_what: string, done: number): TransferHandle {
    this.written = done;
    this.kick();
    return {
      progress: (n) => {
        this.written = n;
        this.kick();
      },
      end: () => {},
    };
  }

  override _read(): void {
    this.wanted = true;
    this.kick();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    const fh = this.fh;
    this.fh = undefined;
    if (!fh) return cb(err);
    // close() waits for a read still in flight on the handle.
    fh.close().then(
      () => cb(err),
      () => cb(err),
    );
  }

  private kick(): void {
    if (this.pumping) {
      this.again = true;
      return;
    }
    if (!this.wanted || this.destroyed) return;
    this.pumping = true;
    this.pump().then(
      () => {
        this.pumping = false;
        if (this.again) this.kick();
      },
      (err: unknown) => {
        this.pumping = false;
        this.fail(err);
      },
    );
  }

  private async pump(): Promise<void> {
    while (this.wanted && !this.destroyed) {
      this.again = false;
      if (this.pos >= this.size) {
        this.wanted = false;
        this.push(null);
        return;
      }
      const limit = this.whole ? this.size : Math.min(this.written, this.size);
      if (limit <= this.pos) return; // until the download writes more, or completes
      this.fh ??= await this.openData();
      if (!this.fh) return;
      const want = Math.min(limit - this.pos, CHUNK);
      const buf = Buffer.allocUnsafe(want);
      const { bytesRead } = await this.fh.read(buf, 0, want, this.pos);
      if (this.destroyed) return;
      if (bytesRead === 0) {
        if (this.whole) throw new InternalError(`blob ended at byte ${this.pos} of ${this.size}`);
        return; // truncated by a download that started over: it reports again as it rewrites
      }
      this.pos += bytesRead;
      this.wanted = this.push(bytesRead === want ? buf : buf.subarray(0, bytesRead));
    }
  }

  /** The ingest's data file while it exists, else the committed blob; undefined: neither yet. */
  private async openData(): Promise<FileHandle | undefined> {
    for (const [path, committed] of [
      [this.paths.ingest, false],
      [this.paths.blob, true],
    ] as const) {
      if (this.whole && !committed) continue;
      try {
        const fh = await open(path, "r");
        if (committed) this.whole = true;
        return fh;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
      }
    }
    if (this.whole) throw new InternalError(`blob ${this.paths.blob} is not in the store`);
    return undefined;
  }
}
