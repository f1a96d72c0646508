// Single-use tokens for streaming URLs, like kubelet's request cache: the CRI call stores the
// request and hands out a URL carrying an unguessable token; the first request to that URL
// consumes it. Unknown, used and expired tokens are indistinguishable to the caller (404).
import { randomBytes } from "node:crypto";
import { ResourceExhaustedError } from "../util/errors.js";

export const DEFAULT_TOKEN_TTL_MS = 60_000;
export const DEFAULT_MAX_IN_FLIGHT = 1000;

interface Entry<T> {
  value: T;
  expiresAt: number;
}

export class RequestCache<T> {
  // A Map iterates in insertion order, and every entry has the same TTL, so the oldest entries
  // (the first to expire) are always at the front.
  private readonly entries = new Map<string, Entry<T>>();

  constructor(
    private readonly ttlMs = DEFAULT_TOKEN_TTL_MS,
    private readonly maxInFlight = DEFAULT_MAX_IN_FLIGHT,
    private readonly now: () => number = Date.now,
  ) {}

  /** Stores `value` and returns its token (128 random bits, base64url). */
  insert(value: T): string {
    this.prune();
    if (this.entries.size >= this.maxInFlight) {
      throw new ResourceExhaustedError(`too many pending streaming requests (maximum ${this.maxInFlight})`);
    }
    let token: string;
    do token = randomBytes(16).toString("base64url");
    while (this.entries.has(token));
    this.entries.set(token, { value, expiresAt: this.now() + this.ttlMs });
    return token;
  }

  /** Returns the request for `token` and forgets it; undefined if unknown or expired. */
  consume(token: string): T | undefined {
    const e = this.entries.get(token);
    if (!e) return undefined;
    this.entries.delete(token);
    return e.expiresAt > this.now() ? e.value : undefined;
  }

  get size(): number {
    this.prune();
    return this.entries.size;
  }

  private prune(): void {
    const now = this.now();
    for (const [token, e] of this.entries) {
      if (e.expiresAt > now) break;
      this.entries.delete(token);
    }
  }
}
