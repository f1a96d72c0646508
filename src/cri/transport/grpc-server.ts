// berth's own gRPC server: grpc-routes.ts's methods served over berth's own HTTP/2 server
// connection (h2-connection.ts) on plain sockets, without node:http2 or grpc-js. It takes the
// same service definitions and grpc-js style implementations as grpc.Server (cri/server.ts
// implementService builds them). It never looks at :authority, so it takes the unix socket's
// connections directly: no look-ahead, no rewriting (grpc-listener.ts is for grpc-js).
// Shutdown: tryShutdown sends GOAWAY on every connection and calls back when their in-flight
// calls are done and they closed; forceShutdown closes them, which cancels every call.

import type { ServiceDefinition, UntypedServiceImplementation } from "@grpc/grpc-js";
import { createServer, type Server as NetServer, type Socket } from "node:net";
import type { Logger } from "../../util/log.js";
import { GrpcRoutes, type MessageLimits } from "./grpc-routes.js";
import { H2Connection } from "./h2-connection.js";
import { ErrorCode } from "./h2-frames.js";

export interface BerthGrpcServerOptions extends MessageLimits {
  log: Logger;
}

export class BerthGrpcServer {
  private readonly routes: GrpcRoutes;
  private readonly connections = new Set<H2Connection>();
  private netServer: NetServer | undefined;
  private shuttingDown = false;
  private drained: (() => void) | undefined;

  constructor(private readonly opts: BerthGrpcServerOptions) {
    this.routes = new GrpcRoutes(opts);
  }

  /** Registers every method of `definition` that `impl` has (as grpc.Server.addService). */
  addService(definition: ServiceDefinition, impl: UntypedServiceImplementation): void {
    this.routes.addService(definition, impl);
  }

  /** Serves a unix socket path (which must not exist); the caller's umask applies. */
  listen(path: string): Promise<void> {
    const net = (this.netServer = createServer((socket) => this.serve(socket)));
    return new Promise((resolve, reject) => {
      net.once("error", reject);
      net.listen(path, () => {
        net.off("error", reject);
        net.on("error", (err) => this.opts.log.error({ err }, "gRPC socket listener error"));
        resolve();
      });
    });
  }

  /** Serves one accepted connection. */
  serve(socket: Socket): void {
    if (this.shuttingDown) {
      socket.destroy();
      return;
    }
    const conn: H2Connection = new H2Connection(socket, {
      onStream: (stream) => this.routes.dispatch(stream),
      onClose: () => {
        this.connections.delete(conn);
        this.checkDrained();
      },
      onError: (err) =>
        err.code === ErrorCode.INTERNAL_ERROR
          ? this.opts.log.error({ err: err.message }, "gRPC connection closed: internal error")
          : this.opts.log.debug(
              { err: err.message, code: err.code },
              "gRPC connection closed: not a valid HTTP/2 client stream",
            ),
    });
    this.connections.add(conn);
  }

  /** Streams open on all connections (for tests: a cancelled or finished call leaves none). */
  openStreams(): number {
    let n = 0;
    for (const c of this.connections) n += c.streams.size;
    return n;
  }

  /** Stops accepting connections (the socket path goes away); those accepted stay. */
  stopListening(): void {
    this.netServer?.close();
  }

  /** GOAWAY to every connection; `cb` runs once their in-flight calls are done and they closed. */
  tryShutdown(cb: (err?: Error) => void): void {
    this.shuttingDown = true;
    this.netServer?.close();
    this.drained = () => cb();
    for (const c of this.connections) c.shutdown();
    this.checkDrained();
  }

  /** Ends every connection now; calls still running see their cancellation. */
  forceShutdown(): void {
    this.shuttingDown = true;
    this.netServer?.close();
    for (const c of this.connections) c.destroy();
  }

  private checkDrained(): void {
    if (this.drained && this.connections.size === 0) {
      const cb = this.drained;
      this.drained = undefined;
      process.nextTick(cb);
    }
  }
}
