// The CRI gRPC server: RuntimeService and ImageService on a unix socket, and the one wrapper
// every gRPC service of berthd is served through (implementService: the CRI here, berth.v1
// for the CLI in src/api). The wrapper's output is a grpc-js service implementation, served by
// either berth's own gRPC server on its own HTTP/2 connection (transport/grpc-server.ts, without
// node:http2: under half of grpc-js's server CPU per read, bench/read-cpu.bench.ts) or
// @grpc/grpc-js's, as [grpc] server says.
// Every method of a service definition is registered. A method with a handler runs it; every
// other method answers UNIMPLEMENTED naming itself, so a client never sees a bare "unknown
// service" and nothing is silently missed. The wrapper maps errors (status.ts), passes an
// AbortSignal for the call's cancellation and logs the call; unary, server-streaming and
// client-streaming methods are served. A read kubelet polls must cost little more than grpc-js
// itself (issue 15): the signal is made only for handlers that ask for it, the call's log line
// is built only when debug logging is on, the handler starts in grpc-js's callback without a
// promise hop, and the reads kubelet polls are traced without AsyncLocalStorage (POLLED_READS).

import * as grpc from "@grpc/grpc-js";
import * as cri from "../gen/cri/runtime/v1/api.js";
import { ImageServiceService, RuntimeServiceService } from "../gen/cri/runtime/v1/api.js";
import { UnimplementedError } from "../util/errors.js";
import type { Logger } from "../util/log.js";
import type { CallContext, CallHints, CriCallObserver, CriHandlers, StreamContext } from "./handlers.js";
import { withReusedWriter } from "./response-encoder.js";
import { codeName, isExpected, toGrpcStatus } from "./status.js";
import { GrpcUnixListener } from "./transport/grpc-listener.js";
import { BerthGrpcServer } from "./transport/grpc-server.js";

/** Which gRPC server serves the socket: berth's own on its own HTTP/2 connection, or @grpc/grpc-js's. */
export type GrpcServerKind = "berth" | "grpc-js";
export const GRPC_SERVER_KINDS: readonly GrpcServerKind[] = ["berth", "grpc-js"];

/** Either server; both take grpc-js service definitions and implementations. */
export type CriGrpcServer = grpc.Server | BerthGrpcServer;

/** What serveUnix hands back: stop accepting, and end whatever connection is left. */
export interface UnixListener {
  close(): void;
  destroyAll(): void;
}

export interface CriServerOptions {
  log: Logger;
  /** Default "berth": berth's own (transport/grpc-server.ts); "grpc-js" keeps grpc-js's server. */
  server?: GrpcServerKind;
  /** Bytes; kubelet sends and accepts up to 16 MiB. */
  maxRecvMessageSize: number;
  maxSendMessageSize: number;
}

// Handlers are stored untyped here; handlers.ts types them per method for their authors.
type AnyUnary = (
  request: unknown,
  ctx: CallContext & { call: grpc.ServerUnaryCall<unknown, unknown> },
) => Promise<unknown>;
type AnyStream = (
  request: unknown,
  ctx: StreamContext<unknown> & { call: grpc.ServerWritableStream<unknown, unknown> },
) => Promise<void>;
type AnyClientStream = (
  requests: grpc.ServerReadableStream<unknown, unknown>,
  ctx: CallContext & { call: grpc.ServerReadableStream<unknown, unknown> },
) => Promise<unknown>;

function unimplemented(method: string): () => Promise<never> {
  return () => Promise.reject(new UnimplementedError(`${method} is not implemented yet`));
}

type Cancellable = { cancelled: boolean; once(event: "cancelled", fn: () => void): unknown };

/** Wires an AbortSignal to a call's cancellation (client cancel, deadline, connection loss). */
function signalFor(call: Cancellable, cancelledAtStart = call.cancelled): AbortSignal {
  const ac = new AbortController();
  if (cancelledAtStart) ac.abort();
  else if (call.cancelled) ac.abort(new Error("call cancelled by the client"));
  else call.once("cancelled", () => ac.abort(new Error("call cancelled by the client")));
  return ac.signal;
}

/**
 * A unary or client-streaming call's context. Its `signal` is made on first use: most
 * handlers (every status and list read) never look at it, and an AbortController with its
 * listener on every call was a measurable part of a read's cost. A signal asked for after the
 * call was cancelled is aborted already, with the reason it would have had from the start.
 * A class, so that a call costs one small object of one shape (no per-call getter closure).
 */
class LazySignalContext<C extends Cancellable & { metadata: grpc.Metadata }> implements CallContext {
  private readonly cancelledAtStart: boolean;
  private made: AbortSignal | undefined;

  constructor(
    readonly method: string,
    readonly call: C,
    readonly log: Logger,
  ) {
    this.cancelledAtStart = call.cancelled;
  }

  /** Read through: berth's own server builds a call's Metadata only when asked. */
  get metadata(): grpc.Metadata {
    return this.call.metadata;
  }

  get signal(): AbortSignal {
    return (this.made ??= signalFor(this.call, this.cancelledAtStart));
  }
}

export function callContext<C extends Cancellable & { metadata: grpc.Metadata }>(
  method: string,
  call: C,
  log: Logger,
): CallContext & { call: C } {
  return new LazySignalContext(method, call, log);
}

/** `started` is performance.now() (a number: no BigInt allocated per call). */
function finish(log: Logger, label: string, method: string, started: number, err: unknown): void {
  if (err === undefined) {
    if (log.isLevelEnabled("debug")) log.debug({ method, code: "OK", durationMs: performance.now() - started }, label);
    return;
  }
  const durationMs = performance.now() - started;
  const code = codeName(toGrpcStatus(err, method).code);
  if (isExpected(err)) log.debug({ method, code, durationMs, error: (err as Error).message }, label);
  else log.error({ method, code, durationMs, err }, `${label} failed`);
}

/** Without an observer a handler just runs. */
const noObserver: CriCallObserver = { run: (_method, handler) => handler() };

/**
 * The reads kubelet polls (every pod and container each second or so, and the image and
 * runtime status): traced without AsyncLocalStorage (CallHints.polled). None of them opens a
 * span after an await, but a verbose status, which asks the shim for the pid, is not polled
 * and loses that one span.
 */
export const POLLED_READS: ReadonlySet<string> = new Set(
  [
    "RuntimeService/Version",
    "RuntimeService/Status",
    "RuntimeService/RuntimeConfig",
    "RuntimeService/ContainerStatus",
    "RuntimeService/PodSandboxStatus",
    "RuntimeService/ListContainers",
    "RuntimeService/ListPodSandbox",
    // Evented PLEG holds this stream open for the kubelet's life.
    "RuntimeService/GetContainerEvents",
    "ImageService/ImageStatus",
    "ImageService/ListImages",
    "ImageService/ImageFsInfo",
  ].map((m) => `runtime.v1.${m}`),
);

/**
 * Runs a handler through the observer. The handler starts synchronously, inside grpc-js's
 * callback (no extra promise hop); a synchronous throw becomes a rejection.
 */
function observe<T>(observer: CriCallObserver, method: string, hints: CallHints, run: () => Promise<T>): Promise<T> {
  try {
    return observer.run(method, run, hints);
  } catch (err) {
    return Promise.reject(err);
  }
}

export interface ServiceOptions {
  log: Logger;
  /** Runs around every call, UNIMPLEMENTED ones included (src/observability). */
  observer?: CriCallObserver;
  /** The log message of a call, e.g. "cri call". */
  label?: string;
  /** Names the service's handlers in errors, e.g. "CRI". */
  kind?: string;
}

/**
 * The grpc-js implementation of `definition` with the given handlers (keyed by the method's
 * lowerCamel name; handlers.ts types them): unary handlers get the request, server-streaming
 * ones get the request and ctx.send, client-streaming ones get the call to read requests from.
 */
export function implementService(
  definition: grpc.ServiceDefinition,
  given: Record<string, unknown>,
  opts: ServiceOptions,
): grpc.UntypedServiceImplementation {
  const { log, observer = noObserver, label = "cri call", kind = "CRI" } = opts;
  for (const name of Object.keys(given)) {
    if (given[name] !== undefined && !Object.hasOwn(definition, name)) {
      throw new Error(`${kind} handler "${name}" matches no method of the service definition`);
    }
  }
  const impl: grpc.UntypedServiceImplementation = {};
  for (const [name, def] of Object.entries(definition)) {
    const method = def.path.replace(/^\//, "");
    const handler = (given[name] as AnyUnary | AnyStream | AnyClientStream | undefined) ?? unimplemented(method);
    const callLog = log.child({ method });
    const done = (started: number, err?: unknown) => finish(log, label, method, started, err);
    const hints: CallHints = { polled: POLLED_READS.has(method) };
    if (def.requestStream && def.responseStream) throw new Error(`${method}: bidirectional streaming is not supported`);
    if (!def.responseStream) {
      // Unary and client-streaming calls differ only in what the handler is given.
      type OneAnswerCall = grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerReadableStream<unknown, unknown>;
      const invoke = (
        def.requestStream
          ? (call: grpc.ServerReadableStream<unknown, unknown>) =>
              (handler as AnyClientStream)(call, callContext(method, call, callLog))
          : (call: grpc.ServerUnaryCall<unknown, unknown>) =>
              (handler as AnyUnary)(call.request, callContext(method, call, callLog))
      ) as (call: OneAnswerCall) => Promise<unknown>;
      impl[name] = ((call: OneAnswerCall, callback: grpc.sendUnaryData<unknown>) => {
        const started = performance.now();
        observe(observer, method, hints, () => invoke(call)).then(
          (response) => {
            done(started);
            callback(null, response);
          },
          (err: unknown) => {
            done(started, err);
            callback(toGrpcStatus(err, method));
          },
        );
      }) as grpc.handleUnaryCall<unknown, unknown>;
    } else {
      impl[name] = ((call: grpc.ServerWritableStream<unknown, unknown>) => {
        const started = performance.now();
        const signal = signalFor(call);
        const send = (message: unknown) =>
          new Promise<void>((resolve, reject) => {
            if (signal.aborted) return reject(signal.reason);
            if (call.write(message)) return resolve();
            const onDrain = () => {
              signal.removeEventListener("abort", onAbort);
              resolve();
            };
            const onAbort = () => {
              call.off("drain", onDrain);
              reject(signal.reason);
            };
            call.once("drain", onDrain);
            signal.addEventListener("abort", onAbort, { once: true });
          });
        const ctx = { method, signal, metadata: call.metadata, log: callLog, call, send };
        observe(observer, method, hints, () => (handler as AnyStream)(call.request, ctx)).then(
          () => {
            done(started);
            call.end();
          },
          (err: unknown) => {
            done(started, err);
            call.emit("error", toGrpcStatus(err, method));
          },
        );
      }) as grpc.handleServerStreamingCall<unknown, unknown>;
    }
  }
  return impl;
}

/** The method names of a service definition, e.g. ["version", "runPodSandbox", ...]; for tests and docs. */
export const runtimeMethods = Object.keys(RuntimeServiceService);
export const imageMethods = Object.keys(ImageServiceService);

/** A gRPC server serving both CRI services with the given handlers; not yet bound. */
export function createCriServer(handlers: CriHandlers, opts: CriServerOptions): CriGrpcServer {
  const limits = { maxRecvMessageSize: opts.maxRecvMessageSize, maxSendMessageSize: opts.maxSendMessageSize };
  const server =
    opts.server === "grpc-js"
      ? new grpc.Server({
          "grpc.max_receive_message_length": opts.maxRecvMessageSize,
          "grpc.max_send_message_length": opts.maxSendMessageSize,
        })
      : new BerthGrpcServer({ log: opts.log.child({ component: "grpc" }), ...limits });
  const log = opts.log.child({ component: "cri" });
  const service = { log, observer: handlers.observer };
  // Responses are encoded through one reused writer (response-encoder.ts).
  const codecs = cri as unknown as Record<string, unknown>;
  const runtime = withReusedWriter(RuntimeServiceService, codecs);
  const image = withReusedWriter(ImageServiceService, codecs);
  server.addService(runtime, implementService(runtime, handlers.runtime, service));
  server.addService(image, implementService(image, handlers.image, service));
  // Non-CRI services on the same socket (berth.v1.Berth for the CLI, implemented with implementService too).
  for (const extra of handlers.extra ?? []) server.addService(extra.definition, extra.implementation);
  return server;
}

/**
 * Serves the server on a unix socket path (which must not exist) accepting every :authority a
 * gRPC client sends: what berthd uses. berth's own server ignores :authority and listens
 * itself; the others get their connections from transport/grpc-listener.ts.
 */
export async function serveUnix(server: CriGrpcServer, socketPath: string, log: Logger): Promise<UnixListener> {
  if (server instanceof BerthGrpcServer) {
    await server.listen(socketPath);
    return { close: () => server.stopListening(), destroyAll: () => server.forceShutdown() };
  }
  const sink = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  const listener = new GrpcUnixListener(sink, log.child({ component: "grpc" }));
  await listener.listen(socketPath);
  return listener;
}

/** Binds the server to a unix socket path (which must not exist) with the server's own listener. */
export function listenUnix(server: CriGrpcServer, socketPath: string): Promise<void> {
  if (server instanceof BerthGrpcServer) return server.listen(socketPath);
  return new Promise((resolve, reject) => {
    server.bindAsync(`unix://${socketPath}`, grpc.ServerCredentials.createInsecure(), (err) =>
      err ? reject(err) : resolve(),
    );
  });
}

/**
 * Stops accepting calls and waits for in-flight ones; after `graceMs` cuts the rest off.
 * Resolves to whether everything finished in time. With serveUnix's listener, that stops
 * accepting first, and every connection it handed over is gone when this resolves.
 */
export function shutdownServer(
  server: CriGrpcServer,
  graceMs: number,
  listener?: UnixListener,
): Promise<"graceful" | "forced"> {
  listener?.close();
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      server.forceShutdown();
      listener?.destroyAll();
      resolve("forced");
    }, graceMs);
    server.tryShutdown(() => {
      clearTimeout(timer);
      listener?.destroyAll();
      resolve("graceful");
    });
  });
}
