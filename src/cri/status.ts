// The one place where errors become gRPC statuses for CRI callers (DESIGN.md principle 5).
// Core code throws typed errors (util/errors.ts) whose messages already say what to fix;
// this keeps those messages and picks the code. Anything untyped is a bug in berth: the
// caller gets UNKNOWN with the method named, and the daemon log gets the stack.

import { Metadata, status as GrpcStatus, type ServerErrorResponse } from "@grpc/grpc-js";
import { BerthError, GrpcCode, statusCodeOf } from "../util/errors.js";

/** A gRPC status ready to hand to grpc-js (callback error or stream 'error' event). */
export interface CriStatus extends ServerErrorResponse {
  code: number;
  details: string;
}

/** The gRPC status name for a code, e.g. "NOT_FOUND", for logs. */
export function codeName(code: number): string {
  return GrpcStatus[code] ?? String(code);
}

/** True when the error is an expected outcome the caller caused (not a berth bug worth a stack trace). */
export function isExpected(err: unknown): boolean {
  return err instanceof BerthError && err.kind !== "Internal";
}

/** Out of disk space (a write's ENOSPC or EDQUOT, SQLite's SQLITE_FULL): the node ran out, not a berth bug. */
function isDiskFull(err: unknown): boolean {
  const c = typeof err === "object" && err !== null ? (err as { code?: unknown }).code : undefined;
  return c === "ENOSPC" || c === "EDQUOT" || c === "SQLITE_FULL";
}

/** Maps any thrown value to the status sent to the caller of `method` (e.g. "runtime.v1.RuntimeService/Version"). */
export function toGrpcStatus(err: unknown, method: string): CriStatus {
  let code = statusCodeOf(err);
  let details: string;
  if (code === GrpcCode.UNKNOWN && isDiskFull(err)) {
    code = GrpcCode.RESOURCE_EXHAUSTED;
    details = `${method}: no space left on the disk: ${(err as Error).message}`;
  } else if (err instanceof BerthError) details = err.message;
  else if (code !== GrpcCode.UNKNOWN && err instanceof Error) details = err.message;
  else details = `${method}: unexpected error: ${err instanceof Error ? err.message : String(err)}`;
  const out = new Error(details) as CriStatus;
  out.code = code;
  out.details = details;
  out.metadata = new Metadata();
  return out;
}
