// A pull's progress timeout (containerd's image_pull_progress_timeout): while some transfer
// of the pull is open, bytes must keep arriving; when none has for the whole timeout, the pull
// is stalled and gets aborted. A pull with nothing open (waiting for a download slot, in a
// backoff between retries, unpacking) is not stalled, and the clock restarts when a transfer
// opens again, as containerd's reporter restarts it when requests start after an idle spell.
// The watch arms one timer at a time and does not touch it per chunk: a chunk only records
// its time, and a timer that fires early is re-armed for the rest.

/** Time and timers, injectable so the logic can be tested on a fake clock. */
export interface WatchClock {
  /** monotonic milliseconds */
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemClock: WatchClock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

/** One open transfer, as the stall report names it. */
export interface TransferInfo {
  /** a blob's digest, or "manifest <reference>" */
  what: string;
  done: number;
  /** expected bytes; 0 when unknown */
  total: number;
}

export interface TransferHandle {
  /** `done` bytes of the transfer have arrived so far */
  progress(done: number): void;
  /** the transfer closed (finished or failed); idempotent */
  end(): void;
}

/** What watches transfers: a pull's ProgressWatch, told about every transfer it waits on. */
export interface TransferObserver {
  begin(what: string, done: number, total: number): TransferHandle;
}

const noop: TransferHandle = { progress() {}, end() {} };

/** Both observers told of every transfer (a pull's watch, and the reader unpacking the blob). */
export function bothObservers(a: TransferObserver, b: TransferObserver): TransferObserver {
  return {
    begin(what, done, total) {
      const ha = a.begin(what, done, total);
      const hb = b.begin(what, done, total);
      return {
        progress(n) {
          ha.progress(n);
          hb.progress(n);
        },
        end() {
          ha.end();
          hb.end();
        },
      };
    },
  };
}

export class ProgressWatch implements TransferObserver {
  private readonly open = new Set<TransferInfo>();
  private lastProgress = 0;
  private timer: unknown;
  private done = false;

  /**
   * `timeoutMs` of no progress while a transfer is open calls `onStall` once, with the open
   * transfers; 0 disables the watch.
   */
  constructor(
    private readonly timeoutMs: number,
    private readonly onStall: (open: TransferInfo[]) => void,
    private readonly clock: WatchClock = systemClock,
  ) {}

  begin(what: string, done: number, total: number): TransferHandle {
    if (this.timeoutMs <= 0 || this.done) return noop;
    const t: TransferInfo = { what, done, total };
    if (this.open.size === 0) {
      this.lastProgress = this.clock.now();
      this.arm(this.timeoutMs);
    }
    this.open.add(t);
    let ended = false;
    return {
      progress: (n) => {
        if (ended || n <= t.done) return;
        t.done = n;
        this.lastProgress = this.clock.now();
      },
      end: () => {
        if (ended) return;
        ended = true;
        this.open.delete(t);
        if (this.open.size === 0) this.disarm();
      },
    };
  }

  /** The pull ended: no more reports. */
  stop(): void {
    this.done = true;
    this.open.clear();
    this.disarm();
  }

  private arm(ms: number): void {
    this.disarm();
    this.timer = this.clock.setTimeout(() => this.check(), ms);
  }

  private disarm(): void {
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }

  private check(): void {
    this.timer = undefined;
    if (this.done || this.open.size === 0) return;
    const idle = this.clock.now() - this.lastProgress;
    if (idle < this.timeoutMs) return this.arm(this.timeoutMs - idle);
    const open = [...this.open].map((t) => ({ ...t }));
    this.stop();
    this.onStall(open);
  }
}

/**
 * One blob's transfer as every pull waiting on it sees it: a pull joining a download another
 * pull started is told about it (and watches it) from the moment it joins, until it leaves.
 */
export class TransferFanout {
  private active = false;
  private done = 0;
  private readonly handles = new Map<TransferObserver, TransferHandle | undefined>();

  constructor(
    private readonly what: string,
    private readonly total: number,
  ) {}

  /** Adds a watcher; the returned function removes it (ending what it was told about). */
  watch(o: TransferObserver): () => void {
    if (!this.handles.has(o)) this.handles.set(o, this.active ? o.begin(this.what, this.done, this.total) : undefined);
    return () => {
      this.handles.get(o)?.end();
      this.handles.delete(o);
    };
  }

  get watched(): boolean {
    return this.handles.size > 0;
  }

  /** A request for the bytes from `done` on was sent. */
  open(done: number): void {
    this.active = true;
    this.done = done;
    for (const o of this.handles.keys()) {
      this.handles.get(o)?.end();
      this.handles.set(o, o.begin(this.what, done, this.total));
    }
  }

  progress(done: number): void {
    this.done = done;
    for (const h of this.handles.values()) h?.progress(done);
  }

  /** The request closed: its body ended or it failed. */
  close(): void {
    this.active = false;
    for (const o of this.handles.keys()) {
      this.handles.get(o)?.end();
      this.handles.set(o, undefined);
    }
  }
}
