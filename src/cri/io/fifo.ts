// The fifo ends berthd holds for container stdio (one helper for all of them). Container stdio
// goes through named pipes, the way containerd's CRI plugin does it, so it works with any shim
// (berth's and containerd-shim-runc-v2): berthd creates a fifo per stream and the shim opens
// the other end.
//
// Why fifos survive a berthd restart: the shim side holds each fifo open for reading AND
// writing (berth's monitor opens it O_RDWR; the runc shim opens both ends), so the pipe and
// whatever it buffers outlive berthd; while berthd is down the container blocks on a full
// pipe instead of losing output, and a restarted berthd opens the fifos again and goes on.
//
// - FifoReader reads as fast as it can (the log pumps, ExecSync capture). It holds a write
//   end of its own until the shim has opened the fifo (release()), so it never sees an early
//   EOF; after that, EOF means the shim closed its end: the process exited, all output is in.
// - FifoWriter feeds a process's stdin fifo. berthd opens it read-write, so the open never
//   blocks or fails for want of a reader (the shim opens its read end only when the process
//   starts) and berthd stays its only writer: closing it is what the shim reads as EOF, which
//   closes the process's stdin. Writes respect backpressure.
// - FifoSource reads a process's output fifo into a Writable with backpressure (exec and
//   attach through the streaming server): a slow client pauses the reader, the fifo fills, and
//   the process blocks on its next write; nothing grows in berthd's memory.
import { closeSync, constants, openSync } from "node:fs";
import { Socket } from "node:net";
import type { Writable } from "node:stream";
import * as sys from "../../sys/index.js";

export function makeFifo(path: string): void {
  try {
    sys.mknod(path, sys.S_IFIFO | 0o600, 0);
  } catch (err) {
    if ((err as { code?: string }).code !== "EEXIST") throw err;
  }
}

/** A fifo opened for reading, delivering chunks until the last writer closes. */
export class FifoReader {
  private readonly sock: Socket;
  private holdFd: number | undefined;
  readonly done: Promise<void>;

  /** Opens `path` (creating it) for reading; with `hold`, also a write end until release(). */
  constructor(
    readonly path: string,
    onData: (chunk: Buffer) => void,
    hold: boolean,
  ) {
    makeFifo(path);
    const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
    if (hold) this.holdFd = openSync(path, constants.O_WRONLY | constants.O_NONBLOCK);
    this.sock = new Socket({ fd, readable: true, writable: false });
    this.done = new Promise((resolve) => {
      this.sock.on("data", onData);
      this.sock.once("end", () => resolve());
      this.sock.once("close", () => resolve());
      this.sock.once("error", () => resolve());
    });
  }

  /** Drops berthd's own write end: from now on EOF means the shim closed its end. */
  release(): void {
    if (this.holdFd !== undefined) {
      closeSync(this.holdFd);
      this.holdFd = undefined;
    }
  }

  close(): void {
    this.release();
    this.sock.destroy();
  }
}

export class FifoWriter {
  private readonly sock: Socket;
  private closing: Promise<void> | undefined;

  /** Creates the fifo at `path` if needed and opens it for writing. */
  constructor(readonly path: string) {
    makeFifo(path);
    const fd = openSync(path, constants.O_RDWR | constants.O_NONBLOCK);
    this.sock = new Socket({ fd, readable: false, writable: true });
    // The reader went away for good (EPIPE cannot happen on a read-write fd, but be safe).
    this.sock.on("error", () => this.sock.destroy());
  }

  get closed(): boolean {
    return this.closing !== undefined || this.sock.destroyed;
  }

  /** Writes a chunk; false means wait for onDrain before writing more. Discards after close. */
  write(chunk: Buffer): boolean {
    if (this.closed) return true;
    return this.sock.write(chunk);
  }

  /** Calls `fn` once the pending writes have gone into the fifo (or the writer is gone). */
  onDrain(fn: () => void): void {
    if (this.sock.destroyed) return fn();
    const done = () => {
      this.sock.off("drain", done);
      this.sock.off("close", done);
      fn();
    };
    this.sock.on("drain", done);
    this.sock.on("close", done);
  }

  /** Lets pending writes reach the fifo, then closes berthd's end: the reader sees EOF. */
  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      const finish = () => {
        this.sock.destroy();
        resolve();
      };
      if (this.sock.destroyed || this.sock.writableLength === 0) finish();
      else this.onDrain(finish);
    });
    return this.closing;
  }

  /** Closes at once, dropping whatever was not written yet. */
  destroy(): void {
    this.closing ??= Promise.resolve();
    this.sock.destroy();
  }
}

export class FifoSource {
  private readonly sock: Socket;
  private holdFd: number | undefined;
  /** Resolves at EOF (every writer closed), or when the source is closed. */
  readonly done: Promise<void>;
  /** When the last chunk arrived (ms since the epoch); the drain after an exit watches it. */
  lastDataAt = Date.now();

  /**
   * Creates the fifo at `path` if needed and opens it for reading, holding a write end of its
   * own until release() so that EOF cannot come before the shim has opened the fifo. Output
   * goes to `dest` (not ended here), or is discarded when there is none.
   */
  constructor(
    readonly path: string,
    private readonly dest: Writable | undefined,
  ) {
    makeFifo(path);
    const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
    this.holdFd = openSync(path, constants.O_WRONLY | constants.O_NONBLOCK);
    this.sock = new Socket({ fd, readable: true, writable: false });
    this.done = new Promise((resolve) => {
      this.sock.once("end", () => resolve());
      this.sock.once("close", () => resolve());
      this.sock.once("error", () => resolve());
    });
    this.sock.on("data", (chunk: Buffer) => this.forward(chunk));
  }

  private forward(chunk: Buffer): void {
    this.lastDataAt = Date.now();
    const dest = this.dest;
    if (!dest || dest.destroyed || dest.writableEnded) return;
    if (dest.write(chunk)) return;
    this.sock.pause();
    const resume = () => {
      dest.off("drain", resume);
      dest.off("close", resume);
      this.sock.resume();
    };
    dest.on("drain", resume);
    dest.on("close", resume);
  }

  /** True while the destination is full and the reader waits for it. */
  get waitingForClient(): boolean {
    return this.sock.isPaused();
  }

  /** Drops the held write end: from now on EOF means the shim closed its end. */
  release(): void {
    if (this.holdFd !== undefined) {
      closeSync(this.holdFd);
      this.holdFd = undefined;
    }
  }

  close(): void {
    this.release();
    this.sock.destroy();
  }
}
