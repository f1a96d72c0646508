// A process-wide hook around every unary ttrpc call (tracing berthd's calls to its shims).
import type { MetadataInit } from "./definition.js";

/**
 * Wraps every unary call of this process, e.g. to trace berthd's calls to its shims. `run` may
 * be given extra request metadata (e.g. trace ids), sent alongside the caller's own.
 */
export type CallObserver = (
  label: string,
  run: (extraMetadata?: Record<string, string>) => Promise<Buffer>,
) => Promise<Buffer>;
let callObserver: CallObserver | undefined;

/** Installs the process-wide unary call observer; returns a function that removes it. */
export function setCallObserver(fn: CallObserver): () => void {
  callObserver = fn;
  return () => {
    if (callObserver === fn) callObserver = undefined;
  };
}

/** The caller's metadata plus `extra` (the caller's own keys win). */
export function withMetadata(md: MetadataInit | undefined, extra: Record<string, string>): MetadataInit {
  const out = new Map<string, string | string[]>(Object.entries(extra));
  if (md) for (const [k, v] of md instanceof Map ? md.entries() : Object.entries(md)) out.set(k.toLowerCase(), v);
  return out;
}

/** The observer installed now, if any. */
export function currentCallObserver(): CallObserver | undefined {
  return callObserver;
}
