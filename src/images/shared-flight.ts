// Work shared by concurrent callers that may each give up. Two pulls of one image (or two
// pulls sharing a layer) run one download; a caller whose call is cancelled leaves it at once,
// and the work itself is aborted only when the last caller has left. That last caller returns
// once the aborted work has stopped and cleaned up, so "the call ended" means "nothing of it is
// left running". A caller arriving while aborted work is still winding down waits for it and
// then starts afresh, never joining work that is already doomed.
import { BerthError, CanceledError } from "../util/errors.js";

interface Flight<T> {
  /** aborted when the last waiting caller left */
  ac: AbortController;
  /** callers still waiting */
  waiters: number;
  promise: Promise<T>;
  /** resolves when `promise` settled, whichever way */
  settled: Promise<void>;
}

/** The error a caller leaving because of `signal` gets: a typed error, CANCELLED unless its reason is one. */
export function cancelError(signal: AbortSignal, what: string): BerthError {
  const r: unknown = signal.reason;
  if (r instanceof BerthError) return r;
  const why = r instanceof Error && r.name !== "AbortError" ? `: ${r.message}` : "";
  return new CanceledError(`${what} cancelled${why}`, { cause: r });
}

export class SharedFlight<T> {
  private readonly flights = new Map<string, Flight<T>>();

  /**
   * Runs `fn(signal)` for `key`, or joins the run already going. `signal` aborts the caller's
   * wait (rejecting with cancelError(signal, what)); the run's own signal aborts when no caller
   * is left. A caller without a signal never leaves, so the run it joined is never aborted.
   */
  do(
    key: string,
    fn: (signal: AbortSignal) => Promise<T>,
    opts: { signal?: AbortSignal; what?: string } = {},
  ): Promise<T> {
    const { signal } = opts;
    const what = opts.what ?? key;
    if (signal?.aborted) return Promise.reject(cancelError(signal, what));
    let f = this.flights.get(key);
    if (!f || f.ac.signal.aborted) f = this.start(key, fn, f);
    const flight = f;
    flight.waiters++;
    if (!signal) return flight.promise;
    return new Promise<T>((resolve, reject) => {
      let left = false;
      const onAbort = () => {
        left = true;
        const err = cancelError(signal, what);
        if (--flight.waiters > 0) return reject(err);
        flight.ac.abort(err);
        void flight.settled.then(() => reject(err));
      };
      signal.addEventListener("abort", onAbort, { once: true });
      flight.promise.then(
        (v) => {
          if (left) return;
          signal.removeEventListener("abort", onAbort);
          flight.waiters--;
          resolve(v);
        },
        (e: unknown) => {
          if (left) return;
          signal.removeEventListener("abort", onAbort);
          flight.waiters--;
          reject(e as Error);
        },
      );
    });
  }

  /** Whether a run for `key` exists now (possibly winding down after an abort). */
  has(key: string): boolean {
    return this.flights.has(key);
  }

  private start(key: string, fn: (signal: AbortSignal) => Promise<T>, prev: Flight<T> | undefined): Flight<T> {
    const ac = new AbortController();
    // Called synchronously when nothing winds down before it (the common case), as a plain
    // single-flight would: callers may look at side effects of the start right away.
    const promise = (async () => {
      if (prev) await prev.settled;
      ac.signal.throwIfAborted();
      return fn(ac.signal);
    })();
    // Registered before any caller's handlers: a caller seeing the result sees the key free.
    const forget = () => {
      if (this.flights.get(key) === f) this.flights.delete(key);
    };
    const settled = promise.then(forget, forget);
    const f: Flight<T> = { ac, waiters: 0, promise, settled };
    this.flights.set(key, f);
    return f;
  }
}
