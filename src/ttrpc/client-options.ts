// Options of the ttrpc client and of its calls.
import type { MetadataInit } from "./definition.js";

export interface ClientOptions {
  /** Largest payload sent or accepted, in bytes (default 4 MiB, Go ttrpc's fixed limit). */
  maxMessageSize?: number;
  /** Give up connecting after this long (default 10 s). */
  connectTimeoutMs?: number;
}

export interface CallOptions {
  /** Fails the call with DeadlineExceededError after this long; also sent to the server as timeout_nano. */
  timeoutMs?: number;
  /** Request metadata; keys are sent lower-case (e.g. `containerd-namespace-ttrpc`). */
  metadata?: MetadataInit;
  /** Aborting fails the call with CanceledError (the server is not told: ttrpc has no cancel message). */
  signal?: AbortSignal;
}

export interface StreamKind {
  requestStream: boolean;
  responseStream: boolean;
}
