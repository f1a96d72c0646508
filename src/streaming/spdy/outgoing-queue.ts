// The session's outgoing frame queue. Header blocks are compressed asynchronously (the zlib
// context is shared by the whole session), so a frame may still be a promise; frames go to the
// socket strictly in the order they were queued.
import type { Duplex } from "node:stream";

export interface OutgoingQueueHooks {
  /** False once the session or its socket is closed: frames are dropped. */
  canWrite(): boolean;
  /** A queued frame failed to encode. */
  failed(err: unknown): void;
  /** The queue just ran empty (before flush waiters are released). */
  drained(): void;
}

export class OutgoingQueue {
  private items: (Buffer | Promise<Buffer>)[] = [];
  private flushing = false;
  private waiters: (() => void)[] = [];

  constructor(
    private readonly socket: Duplex,
    private readonly hooks: OutgoingQueueHooks,
  ) {}

  /** Frames waiting for the ones before them. */
  get length(): number {
    return this.items.length;
  }

  push(item: Buffer | Promise<Buffer>): void {
    if (!this.hooks.canWrite()) return;
    if (!Buffer.isBuffer(item)) item.catch(() => undefined);
    if (!this.flushing && this.items.length === 0 && Buffer.isBuffer(item)) {
      this.socket.write(item);
      return;
    }
    this.items.push(item);
    if (!this.flushing) void this.flush();
  }

  /** Resolves once everything queued so far has been handed to the socket. */
  flushed(): Promise<void> {
    if (!this.flushing && this.items.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Drops what is queued (the session is gone). */
  clear(): void {
    this.items = [];
  }

  /** Releases everyone waiting in flushed(). */
  releaseWaiters(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  private async flush(): Promise<void> {
    this.flushing = true;
    while (this.items.length > 0) {
      const item = this.items.shift() as Buffer | Promise<Buffer>;
      let buf: Buffer;
      try {
        buf = Buffer.isBuffer(item) ? item : await item;
      } catch (err) {
        this.hooks.failed(err);
        break;
      }
      if (this.hooks.canWrite()) this.socket.write(buf);
    }
    this.flushing = false;
    this.hooks.drained();
    this.releaseWaiters();
  }
}
