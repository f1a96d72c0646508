// The shape of a CRI handler. Handlers are plain async functions keyed by the method's
// lowerCamel name in the generated service definition ("runPodSandbox", "listImages").
// A module that implements part of the CRI exports a Partial<CriMethodHandlers> (or
// ImageHandlers); the composition root spreads those together and server.ts answers every
// method nobody implemented with UNIMPLEMENTED. A real handler replaces the default just by
// being present under its name.

import type {
  handleClientStreamingCall,
  handleServerStreamingCall,
  handleUnaryCall,
  Metadata,
  ServerReadableStream,
  ServerUnaryCall,
  ServerWritableStream,
  ServiceDefinition,
  UntypedServiceImplementation,
} from "@grpc/grpc-js";
import type { ImageServiceServer, RuntimeServiceServer } from "../gen/cri/runtime/v1/api.js";
import type { Logger } from "../util/log.js";

/** What every handler gets besides its request. */
export interface CallContext {
  /** Full method path without the leading slash: "runtime.v1.RuntimeService/Version". */
  method: string;
  /** Aborted when the caller cancels or its deadline passes; pass it down to long operations. */
  signal: AbortSignal;
  metadata: Metadata;
  /** Child logger carrying the method name. */
  log: Logger;
}

export interface StreamContext<Res> extends CallContext {
  /** Sends one message; resolves when the stream can take more (respects backpressure). */
  send(message: Res): Promise<void>;
}

export type UnaryHandler<Req, Res> = (
  request: Req,
  ctx: CallContext & { call: ServerUnaryCall<Req, Res> },
) => Promise<Res>;
export type ClientStreamHandler<Req, Res> = (
  requests: ServerReadableStream<Req, Res>,
  ctx: CallContext & { call: ServerReadableStream<Req, Res> },
) => Promise<Res>;
export type ServerStreamHandler<Req, Res> = (
  request: Req,
  ctx: StreamContext<Res> & { call: ServerWritableStream<Req, Res> },
) => Promise<void>;

/** The async handler type for one grpc-js handler type of a generated server interface. */
export type AsyncHandler<H> =
  H extends handleServerStreamingCall<infer Req, infer Res>
    ? ServerStreamHandler<Req, Res>
    : H extends handleClientStreamingCall<infer Req, infer Res>
      ? ClientStreamHandler<Req, Res>
      : H extends handleUnaryCall<infer Req, infer Res>
        ? UnaryHandler<Req, Res>
        : never;

/** Async handlers for a generated grpc-js server interface (berth.v1 in src/api uses it too). */
export type ServiceHandlers<S> = { [K in keyof MethodsOf<S>]: AsyncHandler<S[K]> };

/** Drops the string index signature that grpc-js server interfaces carry, keeping the method names. */
type MethodsOf<S> = { [K in keyof S as string extends K ? never : K]: S[K] };

export type CriMethodHandlers = ServiceHandlers<RuntimeServiceServer>;
export type ImageHandlers = ServiceHandlers<ImageServiceServer>;

/** What the server knows of a call before it runs, for its observer. */
export interface CallHints {
  /**
   * A read kubelet polls (server.ts POLLED_READS): whatever it calls that opens a span does so
   * before its first await, so its trace needs no AsyncLocalStorage (observability/tracer.ts).
   */
  polled: boolean;
}

/** Wraps every CRI call's handler (tracing, metrics); learns the outcome from the promise. */
export interface CriCallObserver {
  run<T>(method: string, handler: () => Promise<T>, hints?: CallHints): Promise<T>;
}

/** Everything the CRI server serves; missing methods answer UNIMPLEMENTED. */
export interface CriHandlers {
  /** Runs around every CRI call, UNIMPLEMENTED ones included (src/observability). */
  observer?: CriCallObserver;
  runtime: Partial<CriMethodHandlers>;
  image: Partial<ImageHandlers>;
  /** Other services served on the same socket, e.g. berth.v1.Berth (api/berth-service.ts). */
  extra?: { definition: ServiceDefinition; implementation: UntypedServiceImplementation }[];
}
