// The lock between synchronizing a new NRI plugin and creating pods and containers (NRI's
// BlockPluginSync). Synchronize sends a plugin a snapshot of every pod and container; a pod or
// container created while that snapshot is taken and the plugin joins the running set would be
// in neither the snapshot nor sent to the plugin as an event. So creations hold the lock shared
// for their whole run, a synchronization holds it exclusively: a creation either finishes before
// the snapshot (and is in it) or starts after the plugin joined (and the plugin sees its event).
// Writers are preferred: a plugin waiting to synchronize is not starved by a stream of creations.

export class SyncLock {
  private readers = 0;
  private writer = false;
  private waitingWriters: (() => void)[] = [];
  private waitingReaders: (() => void)[] = [];

  /** Runs `fn` with the lock held shared (many at once; none while a plugin synchronizes). */
  async shared<T>(fn: () => Promise<T>): Promise<T> {
    if (this.writer || this.waitingWriters.length > 0) await new Promise<void>((r) => this.waitingReaders.push(r));
    else this.readers++;
    try {
      return await fn();
    } finally {
      this.readers--;
      this.wake();
    }
  }

  /** Runs `fn` with the lock held exclusively (no creation in flight). */
  async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    if (this.writer || this.readers > 0) await new Promise<void>((r) => this.waitingWriters.push(r));
    else this.writer = true;
    try {
      return await fn();
    } finally {
      this.writer = false;
      this.wake();
    }
  }

  /** Hands the lock on: to a waiting writer once no one holds it, else to every waiting reader. */
  private wake(): void {
    if (this.writer || this.readers > 0) return;
    const w = this.waitingWriters.shift();
    if (w) {
      this.writer = true;
      w();
      return;
    }
    const rs = this.waitingReaders;
    this.waitingReaders = [];
    this.readers += rs.length;
    for (const r of rs) r();
  }
}
