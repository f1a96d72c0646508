// Turning a handler's outcome into a ttrpc status, and the lazily created abort signal of a call.
import { GrpcCode, statusCodeOf } from "../util/errors.js";
import type { CallContext, ErrorStatus } from "./server-types.js";

export function oversizedResponse(ctx: CallContext, length: number, limit: number): Error {
  return Object.assign(
    new Error(
      `ttrpc: response of ${ctx.service}/${ctx.method} is ${length} bytes, over the maximum message size of ${limit}`,
    ),
    { grpcCode: GrpcCode.RESOURCE_EXHAUSTED },
  );
}

/** An AbortController made only when someone asks for its signal. */
export class LazyAbort {
  private controller: AbortController | undefined;
  private abortedWith: { reason: unknown } | undefined;

  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.abortedWith) this.controller.abort(this.abortedWith.reason);
    }
    return this.controller.signal;
  }

  get aborted(): boolean {
    return this.abortedWith !== undefined;
  }

  get reason(): unknown {
    return this.abortedWith?.reason;
  }

  abort(reason: unknown): void {
    if (this.abortedWith) return;
    this.abortedWith = { reason };
    this.controller?.abort(reason);
  }
}

export function statusOfError(err: unknown, signal: { aborted: boolean; reason: unknown }): ErrorStatus {
  // A handler that passes its signal on (timers, fetch, child processes) gets a generic
  // AbortError back; report why the signal fired instead.
  const abortLike = err instanceof Error && (err.name === "AbortError" || err.name === "TimeoutError");
  const source = signal.aborted && abortLike ? signal.reason : err;
  let code = statusCodeOf(source);
  if (code === GrpcCode.OK) code = GrpcCode.UNKNOWN;
  const message = source instanceof Error ? source.message : String(source);
  return { code, message };
}
