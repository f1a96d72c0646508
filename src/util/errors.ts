// Typed errors thrown by core code. One place (cri/status.ts for gRPC, the shim's ttrpc
// server for ttrpc) maps them to status codes, so core code never speaks gRPC (DESIGN.md principle 5).

export type ErrorKind =
  | "NotFound"
  | "AlreadyExists"
  | "InvalidArgument"
  | "FailedPrecondition"
  | "Unavailable"
  | "Unimplemented"
  | "Unauthenticated"
  | "PermissionDenied"
  | "ResourceExhausted"
  | "DeadlineExceeded"
  | "Canceled"
  | "DataLoss"
  | "Internal";

export abstract class BerthError extends Error {
  abstract readonly kind: ErrorKind;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

export class NotFoundError extends BerthError {
  readonly kind = "NotFound";
}
export class AlreadyExistsError extends BerthError {
  readonly kind = "AlreadyExists";
}
export class InvalidArgumentError extends BerthError {
  readonly kind = "InvalidArgument";
}
export class FailedPreconditionError extends BerthError {
  readonly kind = "FailedPrecondition";
}
export class UnavailableError extends BerthError {
  readonly kind = "Unavailable";
}
export class UnimplementedError extends BerthError {
  readonly kind = "Unimplemented";
}
export class UnauthenticatedError extends BerthError {
  readonly kind = "Unauthenticated";
}
export class PermissionDeniedError extends BerthError {
  readonly kind = "PermissionDenied";
}
export class ResourceExhaustedError extends BerthError {
  readonly kind = "ResourceExhausted";
}
export class DeadlineExceededError extends BerthError {
  readonly kind = "DeadlineExceeded";
}
export class CanceledError extends BerthError {
  readonly kind = "Canceled";
}
/** Data the caller handed over (e.g. an image layer, verified by its digest) is cut short or corrupt. */
export class DataLossError extends BerthError {
  readonly kind = "DataLoss";
}
export class InternalError extends BerthError {
  readonly kind = "Internal";
}

/** gRPC status codes (google.rpc.Code); ttrpc uses the same numbers. */
export const GrpcCode = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

const kindToCode: Record<ErrorKind, number> = {
  NotFound: GrpcCode.NOT_FOUND,
  AlreadyExists: GrpcCode.ALREADY_EXISTS,
  InvalidArgument: GrpcCode.INVALID_ARGUMENT,
  FailedPrecondition: GrpcCode.FAILED_PRECONDITION,
  Unavailable: GrpcCode.UNAVAILABLE,
  Unimplemented: GrpcCode.UNIMPLEMENTED,
  Unauthenticated: GrpcCode.UNAUTHENTICATED,
  PermissionDenied: GrpcCode.PERMISSION_DENIED,
  ResourceExhausted: GrpcCode.RESOURCE_EXHAUSTED,
  DeadlineExceeded: GrpcCode.DEADLINE_EXCEEDED,
  Canceled: GrpcCode.CANCELLED,
  DataLoss: GrpcCode.DATA_LOSS,
  Internal: GrpcCode.INTERNAL,
};

/** The gRPC/ttrpc status code for any thrown value; untyped errors are UNKNOWN unless they carry a grpcCode. */
export function statusCodeOf(err: unknown): number {
  if (err instanceof BerthError) return kindToCode[err.kind];
  if (typeof err === "object" && err !== null && typeof (err as { grpcCode?: unknown }).grpcCode === "number") {
    return (err as { grpcCode: number }).grpcCode;
  }
  return GrpcCode.UNKNOWN;
}

/** The typed error for a gRPC/ttrpc status received from a peer. */
export function errorFromStatus(code: number, message: string): BerthError {
  switch (code) {
    case GrpcCode.NOT_FOUND:
      return new NotFoundError(message);
    case GrpcCode.ALREADY_EXISTS:
      return new AlreadyExistsError(message);
    case GrpcCode.INVALID_ARGUMENT:
      return new InvalidArgumentError(message);
    case GrpcCode.FAILED_PRECONDITION:
      return new FailedPreconditionError(message);
    case GrpcCode.UNAVAILABLE:
      return new UnavailableError(message);
    case GrpcCode.UNIMPLEMENTED:
      return new UnimplementedError(message);
    case GrpcCode.UNAUTHENTICATED:
      return new UnauthenticatedError(message);
    case GrpcCode.PERMISSION_DENIED:
      return new PermissionDeniedError(message);
    case GrpcCode.RESOURCE_EXHAUSTED:
      return new ResourceExhaustedError(message);
    case GrpcCode.DEADLINE_EXCEEDED:
      return new DeadlineExceededError(message);
    case GrpcCode.CANCELLED:
      return new CanceledError(message);
    case GrpcCode.DATA_LOSS:
      return new DataLossError(message);
    default:
      return new InternalError(message);
  }
}
