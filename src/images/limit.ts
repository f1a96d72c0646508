// Small concurrency helpers: a counting semaphore, single-flight, and a shared/exclusive lock.

export class Semaphore {
  private waiting: (() => void)[] = [];
  private active = 0;
  constructor(private readonly max: number) {}

  /** Runs `fn` when a slot is free; a caller whose `signal` aborts while queued leaves the queue. */
  async run<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    signal?.throwIfAborted();
    if (this.active >= this.max) {
      await new Promise<void>((resolve, reject) => {
        const wake = () => {
          signal?.removeEventListener("abort", onAbort);
          resolve();
        };
        const onAbort = () => {
          this.waiting = this.waiting.filter((w) => w !== wake);
          reject(signal!.reason);
        };
        signal?.addEventListener("abort", onAbort, { once: true });
        this.waiting.push(wake);
      });
    } else this.active++;
    try {
      return await fn();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.active--;
    }
  }
}

/** Concurrent calls with the same key share one execution. */
export class SingleFlight<T> {
  private inflight = new Map<string, Promise<T>>();
  do(key: string, fn: () => Promise<T>): Promise<T> {
    const existing = this.inflight.get(key);
    if (existing) return existing;
    const p = fn().finally(() => this.inflight.delete(key));
    this.inflight.set(key, p);
    return p;
  }

  /** Whether a call for `key` is running now. */
  has(key: string): boolean {
    return this.inflight.has(key);
  }
}

/** Many shared holders (pulls) or one exclusive holder (GC). Writers wait for readers to drain. */
export class SharedLock {
  private shared = 0;
  private exclusive = false;
  private queue: { exclusive: boolean; wake: () => void }[] = [];

  /** Nothing holds the lock or waits for it. */
  get free(): boolean {
    return this.shared === 0 && !this.exclusive && this.queue.length === 0;
  }

  private grant(): void {
    while (this.queue.length > 0 && !this.exclusive) {
      const head = this.queue[0];
      if (head.exclusive) {
        if (this.shared > 0) return;
        this.queue.shift();
        this.exclusive = true;
        head.wake();
        return;
      }
      this.queue.shift();
      this.shared++;
      head.wake();
    }
  }

  async withShared<T>(fn: () => Promise<T>): Promise<T> {
    await new Promise<void>((wake) => {
      this.queue.push({ exclusive: false, wake });
      this.grant();
    });
    try {
      return await fn();
    } finally {
      this.shared--;
      this.grant();
    }
  }

  async withExclusive<T>(fn: () => Promise<T>): Promise<T> {
    await new Promise<void>((wake) => {
      this.queue.push({ exclusive: true, wake });
      this.grant();
    });
    try {
      return await fn();
    } finally {
      this.exclusive = false;
      this.grant();
    }
  }
}
