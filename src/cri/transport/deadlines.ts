// Deadlines of in-flight calls without a timer per call. Nearly every call carries a
// grpc-timeout (kubelet's is 2 minutes) and nearly every call answers in a millisecond: arming
// and clearing a Node timer for each was a measurable part of a read's cost. A call whose
// deadline is far off joins a set that one unref'd sweep checks every SWEEP_MS while the set
// is not empty (so it fires at most SWEEP_MS late); only a deadline closer than
// 2 * SWEEP_MS gets a timer of its own.

export const SWEEP_MS = 200;

export interface Expiring {
  /** performance.now() at which the call's deadline passes. */
  readonly deadlineAt: number;
  expire(): void;
}

export class Deadlines {
  private readonly waiting = new Set<Expiring>();
  private sweep: NodeJS.Timeout | undefined;

  /** Starts watching `call`; the returned function stops it (call it when the call ends). */
  watch(call: Expiring, timeoutMs: number): Clear {
    if (timeoutMs < 2 * SWEEP_MS) {
      const t = setTimeout(() => call.expire(), timeoutMs);
      return () => clearTimeout(t);
    }
    this.waiting.add(call);
    this.sweep ??= setInterval(() => this.check(), SWEEP_MS).unref();
    return () => this.forget(call);
  }

  /** How many calls the sweep watches (for tests). */
  get size(): number {
    return this.waiting.size;
  }

  private forget(call: Expiring): void {
    this.waiting.delete(call);
    // The interval stays until a sweep finds the set empty: calls come and go every second
    // under kubelet, and re-arming an interval per burst costs what this saves.
  }

  private check(): void {
    if (this.waiting.size === 0) {
      clearInterval(this.sweep);
      this.sweep = undefined;
      return;
    }
    const now = performance.now();
    for (const c of this.waiting) {
      if (c.deadlineAt <= now) {
        this.waiting.delete(c);
        c.expire();
      }
    }
  }
}

export type Clear = () => void;
