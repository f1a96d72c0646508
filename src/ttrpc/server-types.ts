// Public option and handler types of the ttrpc server, shared by the server and its connections.
import type { Metadata, MethodDefinition, RequestOf, ResponseOf, ServiceDefinition } from "./definition.js";

/** What a handler gets besides its request. */
export interface CallContext {
  /** Full service name and method name as sent by the client. */
  service: string;
  method: string;
  /** Request metadata, keys lower-case (containerd's namespace: `containerd-namespace-ttrpc`). */
  metadata: Metadata;
  /**
   * Aborted when the client's deadline (timeout_nano) passes (reason: DeadlineExceededError),
   * when the connection goes away or the server is force-closed (reason: UnavailableError).
   */
  signal: AbortSignal;
  /** Absolute deadline in ms since the epoch, when the client sent one. */
  deadline: number | undefined;
}

type Awaitable<T> = T | Promise<T>;

/** Handler shapes by streaming kind: unary, client-, server- and bidirectional streaming. */
export type MethodImplementation<M> = M extends { requestStream: true }
  ? M extends { responseStream: true }
    ? (requests: AsyncIterable<RequestOf<M>>, ctx: CallContext) => AsyncIterable<ResponseOf<M>>
    : (requests: AsyncIterable<RequestOf<M>>, ctx: CallContext) => Awaitable<ResponseOf<M>>
  : M extends { responseStream: true }
    ? (request: RequestOf<M>, ctx: CallContext) => AsyncIterable<ResponseOf<M>>
    : (request: RequestOf<M>, ctx: CallContext) => Awaitable<ResponseOf<M>>;

/** Methods left out answer Unimplemented. */
export type ServiceImplementation<D extends ServiceDefinition> = {
  [K in keyof D["methods"]]?: MethodImplementation<D["methods"][K]>;
};

export interface ServerLogger {
  warn(obj: Record<string, unknown>, msg: string): void;
}

export interface ServerOptions {
  /** Largest payload accepted or sent, in bytes (default 4 MiB, Go ttrpc's fixed limit). */
  maxMessageSize?: number;
  /** Connections beyond this are closed on accept (default 1024). */
  maxConnections?: number;
  /**
   * Calls in flight per connection before the server stops reading from it; reading resumes
   * as calls finish, so a flood of requests queues in the socket instead of in memory (default 1024).
   */
  maxConcurrentCalls?: number;
  /** Messages buffered for a streaming handler that is not reading them before the stream fails (default 256). */
  maxStreamBuffer?: number;
  logger?: ServerLogger;
}

export interface ListenOptions {
  /** Permission bits of the socket file (default 0o600). Applied before the path becomes visible. */
  mode?: number;
  backlog?: number;
}

export interface CloseOptions {
  /** How long in-flight calls may take to finish before they are aborted and connections cut (default 10 s). */
  timeoutMs?: number;
}

export interface RegisteredMethod {
  def: MethodDefinition;
  impl: (...args: never[]) => unknown;
}

export interface ErrorStatus {
  code: number;
  message: string;
}

/** What a connection needs from its server: limits, logging and method lookup. */
export interface ConnectionHost {
  readonly maxMessageSize: number;
  readonly maxConcurrentCalls: number;
  readonly maxStreamBuffer: number;
  readonly logger: ServerLogger;
  readonly isClosing: boolean;
  lookup(service: string, method: string): RegisteredMethod | ErrorStatus;
}
