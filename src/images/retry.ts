// Transient-failure handling shared by the registry client and ingest: what counts as
// worth retrying, and a bounded exponential backoff.
import { setTimeout as sleep } from "node:timers/promises";
import { BerthError } from "../util/errors.js";

const transientCodes = new Set([
  "ECONNRESET",
  "ECONNREFUSED",
  "ETIMEDOUT",
  "EPIPE",
  "EAI_AGAIN",
  "ENETUNREACH",
  "EHOSTUNREACH",
  "UND_ERR_SOCKET",
  "UND_ERR_CONNECT_TIMEOUT",
  "UND_ERR_HEADERS_TIMEOUT",
  "UND_ERR_BODY_TIMEOUT",
  "UND_ERR_CLOSED",
]);

/** Thrown for a 5xx / 429 answer or a body cut short; retried like a network error. */
export class TransientHttpError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TransientHttpError";
  }
}

export function isTransient(err: unknown): boolean {
  if (err instanceof TransientHttpError) return true;
  if (err instanceof BerthError) return false;
  for (let e: unknown = err; e && typeof e === "object"; e = (e as { cause?: unknown }).cause) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && transientCodes.has(code)) return true;
    if ((e as Error).name === "TransientHttpError") return true;
  }
  return false;
}

export interface RetryPolicy {
  /** attempts in all, first included */
  attempts: number;
  /** first delay; doubles each time, with jitter */
  baseDelayMs: number;
  maxDelayMs: number;
}

export const defaultRetry: RetryPolicy = { attempts: 5, baseDelayMs: 200, maxDelayMs: 5000 };

export function backoffDelay(policy: RetryPolicy, attempt: number): number {
  const d = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** attempt);
  return d / 2 + Math.random() * (d / 2);
}

/**
 * Runs `fn` until it succeeds, fails with a non-transient error, or attempts run out. Once
 * `signal` aborts, nothing is retried and the signal's reason is what is thrown.
 */
export async function withRetry<T>(
  policy: RetryPolicy & { signal?: AbortSignal },
  fn: (attempt: number) => Promise<T>,
): Promise<T> {
  const { signal } = policy;
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      signal?.throwIfAborted();
      if (!isTransient(err) || attempt + 1 >= policy.attempts) throw err;
      await sleep(backoffDelay(policy, attempt), undefined, { signal }).catch(() => signal?.throwIfAborted());
    }
  }
}
