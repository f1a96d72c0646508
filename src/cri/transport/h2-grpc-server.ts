// berth's own gRPC server on node:http2 (Node's nghttp2 binding), without @grpc/grpc-js's
// server. It takes the same service definitions and grpc-js style implementations as
// grpc.Server (cri/server.ts implementService builds them), and connections from
// GrpcUnixListener. Measured with k8s.io/cri-client on a shared 2-core machine (load 5-10):
//   bench/h2-floor.bench.ts, Version alone, server CPU per call: bare grpc-js 200-273 µs, bare
//     node:http2 145-165, this server with berthd's wrapper 154-216 (-20 to -25%)
//   bench/read-cpu.bench.ts --paired, berthd, mean of two runs each, grpc-js -> this server:
//     ContainerStatus 399 -> 302 µs, PodSandboxStatus 342 -> 291, ImageStatus 290 -> 265,
//     ListImages 273 -> 258, Version 254 -> 224
// What is left per call is mostly Node's own stream and header handling (respond(),
// processHeaders, Http2Stream), which a bare node:http2 server pays too.
//
// Per stream (gRPC over HTTP/2): POST only (405), content-type application/grpc[+proto|;...]
// (415), a known /service/method (else UNIMPLEMENTED), grpc-encoding identity or gzip (else
// UNIMPLEMENTED naming the ones accepted), grpc-timeout as the call's deadline (malformed:
// INTERNAL). Bidirectional methods are refused when registered: berth has none.
// Shutdown: tryShutdown sends GOAWAY on every session (Http2Session.close) and calls back when
// their in-flight streams are done; forceShutdown destroys the sessions, which cancels every call.

import { status as Code, type ServiceDefinition, type UntypedServiceImplementation } from "@grpc/grpc-js";
import {
  constants,
  createServer,
  type Http2Server,
  type Http2Session,
  type IncomingHttpHeaders,
  type ServerHttp2Stream,
} from "node:http2";
import { createServer as createNetServer, type Server as NetServer } from "node:net";
import type { Duplex } from "node:stream";
import type { Logger } from "../../util/log.js";
import { Deadlines } from "./deadlines.js";
import { parseGrpcTimeout } from "./grpc-timeout.js";
import { trailersOnly } from "./grpc-trailers.js";
import { CallCore, H2ReadableCall, H2UnaryCall, H2WritableCall, type CallSetup } from "./h2-call.js";

export interface H2GrpcServerOptions {
  log: Logger;
  maxRecvMessageSize: number;
  maxSendMessageSize: number;
}

type Kind = "unary" | "serverStream" | "clientStream";
interface Route {
  kind: Kind;
  /** The grpc-js style handler; its shape follows `kind`. */
  handler: unknown;
  deserialize: (b: Buffer) => unknown;
  serialize: (v: unknown) => Buffer;
}

/** "application/grpc", optionally followed by "+subtype" or ";params" (the spec's Content-Type). */
export function isGrpcContentType(ct: string | undefined): boolean {
  if (ct === undefined || !ct.startsWith("application/grpc")) return false;
  const next = ct.charAt(16);
  return next === "" || next === "+" || next === ";";
}

export class H2GrpcServer {
  private readonly http2: Http2Server;
  private readonly routes = new Map<string, Route>();
  private readonly sessions = new Set<Http2Session>();
  private readonly deadlines = new Deadlines();
  private shuttingDown = false;
  private drained: (() => void) | undefined;
  /** A listener of its own (listen()); berthd uses GrpcUnixListener instead. */
  private netServer: NetServer | undefined;

  constructor(private readonly opts: H2GrpcServerOptions) {
    this.http2 = createServer({
      // As grpc-js: nghttp2's session memory cap makes Node refuse streams under large
      // messages (16 MiB from kubelet) with ENHANCE_YOUR_CALM; flow control bounds memory.
      maxSessionMemory: Number.MAX_SAFE_INTEGER,
      maxSendHeaderBlockLength: Number.MAX_SAFE_INTEGER,
    });
    this.http2.on("session", (s) => this.addSession(s));
    this.http2.on("stream", (stream, headers) => this.onStream(stream, headers));
  }

  /** Registers every method of `definition` that `impl` has (as grpc.Server.addService). */
  addService(definition: ServiceDefinition, impl: UntypedServiceImplementation): void {
    for (const [name, def] of Object.entries(definition)) {
      const handler = impl[name] ?? impl[def.originalName ?? ""];
      if (!handler) continue;
      if (def.requestStream && def.responseStream)
        throw new Error(`${def.path}: bidirectional streaming is not supported`);
      const kind: Kind = def.requestStream ? "clientStream" : def.responseStream ? "serverStream" : "unary";
      this.routes.set(def.path, {
        kind,
        handler,
        deserialize: def.requestDeserialize as Route["deserialize"],
        serialize: def.responseSerialize as Route["serialize"],
      });
    }
  }

  /** Serves one accepted connection (the socket, or GrpcUnixListener's rewriting stream). */
  injectConnection(connection: Duplex): void {
    this.http2.emit("connection", connection);
  }

  /**
   * Serves a unix socket path (which must not exist) with a plain listener, without the
   * :authority look-ahead of GrpcUnixListener; for tests and tools. Closed by the shutdowns.
   */
  listen(path: string): Promise<void> {
    const net = (this.netServer = createNetServer((socket) => this.injectConnection(socket)));
    return new Promise((resolve, reject) => {
      net.once("error", reject);
      net.listen(path, () => {
        net.off("error", reject);
        resolve();
      });
    });
  }

  /** GOAWAY to every session; `cb` runs once their in-flight calls are done and they closed. */
  tryShutdown(cb: (err?: Error) => void): void {
    this.shuttingDown = true;
    this.netServer?.close();
    this.drained = () => cb();
    for (const s of this.sessions) s.close();
    this.checkDrained();
  }

  /** Ends every session now; calls still running see their cancellation. */
  forceShutdown(): void {
    this.shuttingDown = true;
    this.netServer?.close();
    for (const s of this.sessions) s.destroy();
  }

  /** What GrpcUnixListener calls after shutdown: nothing of this server may stay open. */
  destroy(): void {
    this.forceShutdown();
  }

  private addSession(s: Http2Session): void {
    if (this.shuttingDown) {
      s.destroy();
      return;
    }
    this.sessions.add(s);
    s.on("error", (err) => this.opts.log.debug({ err: err.message }, "gRPC session error"));
    s.once("close", () => {
      this.sessions.delete(s);
      this.checkDrained();
    });
  }

  private checkDrained(): void {
    if (this.drained && this.sessions.size === 0) {
      const cb = this.drained;
      this.drained = undefined;
      process.nextTick(cb);
    }
  }

  private onStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
    // A stream error (peer reset while writing) ends the call through 'close'; never unhandled.
    stream.on("error", noop);
    if (headers[":method"] !== "POST") {
      stream.respond({ ":status": constants.HTTP_STATUS_METHOD_NOT_ALLOWED }, { endStream: true });
      stream.resume();
      return;
    }
    if (!isGrpcContentType(headers["content-type"])) {
      stream.respond({ ":status": constants.HTTP_STATUS_UNSUPPORTED_MEDIA_TYPE }, { endStream: true });
      stream.resume();
      return;
    }
    const path = headers[":path"] ?? "";
    const route = this.routes.get(path);
    if (!route) return refuse(stream, Code.UNIMPLEMENTED, `The server does not implement the method ${path}`);
    const encoding = headers["grpc-encoding"];
    if (encoding !== undefined && encoding !== "identity" && encoding !== "gzip") {
      stream.respond(
        {
          ...trailersOnly(Code.UNIMPLEMENTED, `grpc-encoding ${String(encoding)} is not supported`),
          "grpc-accept-encoding": "identity,gzip",
        },
        { endStream: true },
      );
      stream.resume();
      return;
    }
    let timeoutMs: number | undefined;
    try {
      timeoutMs = parseGrpcTimeout(headers["grpc-timeout"]);
    } catch (err) {
      return refuse(stream, Code.INTERNAL, (err as Error).message);
    }
    const setup: CallSetup = {
      stream,
      headers,
      timeoutMs,
      deadlines: this.deadlines,
      gzip: encoding === "gzip",
      maxRecv: this.opts.maxRecvMessageSize,
      maxSend: this.opts.maxSendMessageSize,
      deserialize: route.deserialize,
      serialize: route.serialize,
    };
    const core = new CallCore(setup);
    switch (route.kind) {
      case "unary":
        return new H2UnaryCall(core).start(route.handler as never);
      case "serverStream":
        return new H2WritableCall(core).start(route.handler as never);
      case "clientStream":
        return new H2ReadableCall(core).start(route.handler as never);
    }
  }
}

function noop(): void {}

/** A trailers-only error before any call exists; the request's bytes are read and dropped. */
function refuse(stream: ServerHttp2Stream, code: number, message: string): void {
  stream.respond(trailersOnly(code, message), { endStream: true });
  stream.resume();
}
