// Background retries of recovery work that failed at berthd start (a shim not answering yet, a
// busy mount): each attempt waits twice as long as the one before, up to a minute, and close()
// cancels whatever is pending when berthd stops.

/** The wait before retry number `attempt + 1`: 1 s, 2 s, 4 s, ... at most 60 s. */
export function backoffMs(attempt: number): number {
  return Math.min(60_000, 1000 * 2 ** attempt);
}

export class RetryScheduler {
  private readonly timers = new Set<NodeJS.Timeout>();

  /** Runs `retry` after backoffMs(attempt); the timer never keeps berthd alive. */
  schedule(attempt: number, retry: () => void): void {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      retry();
    }, backoffMs(attempt));
    timer.unref();
    this.timers.add(timer);
  }

  close(): void {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }
}
