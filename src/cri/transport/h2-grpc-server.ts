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
// Per stream: the checks of grpc-routes.ts.
// Shutdown: tryShutdown sends GOAWAY on every session (Http2Session.close) and calls back when
// their in-flight streams are done; forceShutdown destroys the sessions, which cancels every call.

import type { ServiceDefinition, UntypedServiceImplementation } from "@grpc/grpc-js";
import {
  createServer,
  type Http2Server,
  type Http2Session,
  type IncomingHttpHeaders,
  type ServerHttp2Stream,
} from "node:http2";
import { createServer as createNetServer, type Server as NetServer } from "node:net";
import type { Duplex } from "node:stream";
import type { Logger } from "../../util/log.js";
import { GrpcRoutes, type MessageLimits } from "./grpc-routes.js";
import { NodeCallStream } from "./node-h2-call-stream.js";

export interface H2GrpcServerOptions extends MessageLimits {
  log: Logger;
}

export class H2GrpcServer {
  private readonly http2: Http2Server;
  private readonly routes: GrpcRoutes;
  private readonly sessions = new Set<Http2Session>();
  private shuttingDown = false;
  private drained: (() => void) | undefined;
  /** A listener of its own (listen()); berthd uses GrpcUnixListener instead. */
  private netServer: NetServer | undefined;

  constructor(private readonly opts: H2GrpcServerOptions) {
    this.routes = new GrpcRoutes(opts);
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
    this.routes.addService(definition, impl);
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
    this.routes.dispatch(new NodeCallStream(stream, headers));
  }
}
