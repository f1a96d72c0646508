// Clocks with their unit in the name. CRI and containerd speak nanoseconds since the epoch
// as bigint; Node's clocks speak milliseconds as number. Convert here, not at each call.

const NS_PER_MS = 1_000_000n;

/** Wall-clock milliseconds since the epoch (Date.now()). */
export function nowMs(): number {
  return Date.now();
}

/** Wall-clock nanoseconds since the epoch, with millisecond resolution: CRI timestamps. */
export function nowNs(): bigint {
  return BigInt(Date.now()) * NS_PER_MS;
}

/**
 * Wall-clock nanoseconds since the epoch with a sub-millisecond part taken from hrtime, so
 * records written within one millisecond (CRI log lines) still differ and mostly sort in order.
 */
export function nowNsFine(): bigint {
  return BigInt(Date.now()) * NS_PER_MS + (process.hrtime.bigint() % NS_PER_MS);
}

/** A Date as nanoseconds since the epoch; 0n for no date (the CRI's "unset"). */
export function dateNs(d: Date | undefined): bigint {
  return d ? BigInt(d.getTime()) * NS_PER_MS : 0n;
}

/** Nanoseconds since the epoch as whole milliseconds (rounded down). */
export function nsToMs(ns: bigint): number {
  return Number(ns / NS_PER_MS);
}

/**
 * A clock that reads as Unix nanoseconds but never steps: the wall clock at process start plus
 * monotonic time since. Span starts stay comparable within a trace even if the clock is set.
 */
export function monotonicClockNs(): () => bigint {
  const originNs = BigInt(Date.now()) * NS_PER_MS - process.hrtime.bigint();
  return () => originNs + process.hrtime.bigint();
}
