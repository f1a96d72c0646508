// ttrpc server on a filesystem unix socket, wire-compatible with containerd/ttrpc (Go):
// requests are dispatched by full service name and method name, answered with a
// ttrpc.Response carrying a gRPC status, many calls in flight per connection.
import { chmod, mkdtemp, rename, rmdir, stat, unlink } from "node:fs/promises";
import net from "node:net";
import { basename, dirname, join } from "node:path";

import { AlreadyExistsError, FailedPreconditionError, GrpcCode, UnavailableError } from "../util/errors.js";
import { removeStaleSocket } from "../util/stale-socket.js";
import { type ServiceDefinition, type TtrpcTransport, socketPath } from "./definition.js";
import { DEFAULT_MAX_MESSAGE_SIZE } from "./frame.js";
import { ServerConnection } from "./server-connection.js";
import type {
  CloseOptions,
  ConnectionHost,
  ErrorStatus,
  ListenOptions,
  RegisteredMethod,
  ServerLogger,
  ServerOptions,
  ServiceImplementation,
} from "./server-types.js";

export type {
  CallContext,
  CloseOptions,
  ListenOptions,
  MethodImplementation,
  ServerLogger,
  ServerOptions,
  ServiceImplementation,
} from "./server-types.js";

const noopLogger: ServerLogger = { warn() {} };

export class TtrpcServer implements ConnectionHost {
  private readonly services = new Map<string, Map<string, RegisteredMethod>>();
  private readonly connections = new Set<ServerConnection>();
  private readonly netServer: net.Server;
  private listening: { path: string; ino: number } | undefined;
  private closing: Promise<void> | undefined;
  readonly maxMessageSize: number;
  readonly maxConcurrentCalls: number;
  readonly maxStreamBuffer: number;
  readonly logger: ServerLogger;

  constructor(opts: ServerOptions = {}) {
    this.maxMessageSize = opts.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE;
    this.maxConcurrentCalls = opts.maxConcurrentCalls ?? 1024;
    this.maxStreamBuffer = opts.maxStreamBuffer ?? 256;
    this.logger = opts.logger ?? noopLogger;
    this.netServer = net.createServer({ allowHalfOpen: false, pauseOnConnect: false }, (socket) => this.accept(socket));
    this.netServer.maxConnections = opts.maxConnections ?? 1024;
    this.netServer.on("error", (err) => this.logger.warn({ err }, "ttrpc: server socket error"));
  }

  /** Adds a service; `impl` holds handlers under the definition's camelCase method names. */
  register<D extends ServiceDefinition>(service: D, impl: ServiceImplementation<D>): this {
    if (this.services.has(service.fullName)) {
      throw new AlreadyExistsError(`ttrpc: service ${service.fullName} is already registered`);
    }
    const methods = new Map<string, RegisteredMethod>();
    for (const [camel, def] of Object.entries(service.methods)) {
      const fn = (impl as Record<string, unknown>)[camel];
      if (typeof fn === "function") methods.set(def.name, { def, impl: fn.bind(impl) as RegisteredMethod["impl"] });
    }
    this.services.set(service.fullName, methods);
    return this;
  }

  /** Listens on a filesystem unix socket (a `unix://` prefix is accepted; abstract sockets are refused). */
  async listen(address: string, opts: ListenOptions = {}): Promise<void> {
    if (this.listening || this.closing) throw new FailedPreconditionError("ttrpc: server already listening or closed");
    const path = socketPath(address);
    const mode = opts.mode ?? 0o600;
    await removeStaleSocket(path, "ttrpc socket");
    // Bind inside a fresh 0700 directory, fix the mode, then rename into place: the socket
    // is never reachable at `path` with looser permissions than asked for.
    const tmpDir = await mkdtemp(join(dirname(path), `.ttrpc-${basename(path).slice(0, 8)}-`));
    const tmpSock = join(tmpDir, "s");
    try {
      if (Buffer.byteLength(tmpSock) > 107) {
        // sun_path is 108 bytes; a long target leaves no room for the detour.
        await rmdir(tmpDir).catch(() => {});
        await this.bind(path, opts.backlog);
        await chmod(path, mode);
      } else {
        await this.bind(tmpSock, opts.backlog);
        await chmod(tmpSock, mode);
        await rename(tmpSock, path);
        await rmdir(tmpDir);
      }
    } catch (err) {
      this.netServer.close();
      await unlink(tmpSock).catch(() => {});
      await rmdir(tmpDir).catch(() => {});
      throw err;
    }
    this.listening = { path, ino: (await stat(path)).ino };
  }

  private bind(path: string, backlog: number | undefined): Promise<void> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      this.netServer.once("error", onError);
      this.netServer.listen({ path, backlog }, () => {
        this.netServer.off("error", onError);
        resolve();
      });
    });
  }

  /** Open client connections (a shim with none and no tasks is idle). */
  get connectionCount(): number {
    return this.connections.size;
  }

  /** The socket path being served, once listening. */
  get path(): string | undefined {
    return this.listening?.path;
  }

  /** Serves an already-connected socket (e.g. one end of a socketpair) or another duplex byte stream. */
  serveSocket(socket: TtrpcTransport): void {
    this.accept(socket);
  }

  /**
   * Stops accepting, lets in-flight calls finish (up to `timeoutMs`), then cuts what is left.
   * Requests arriving meanwhile are answered Unavailable. Do not await this from inside a
   * handler: the handler's own call is one of those being waited for.
   */
  close(opts: CloseOptions = {}): Promise<void> {
    if (this.closing) return this.closing;
    const timeoutMs = opts.timeoutMs ?? 10_000;
    this.closing = (async () => {
      const stopped = new Promise<void>((resolve) => this.netServer.close(() => resolve()));
      for (const c of this.connections) c.drain();
      const drained = Promise.all([...this.connections].map((c) => c.closed));
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, timeoutMs);
      });
      await Promise.race([drained, timedOut]);
      clearTimeout(timer);
      for (const c of this.connections) c.destroy(new UnavailableError("ttrpc: server closed"));
      await stopped;
      await this.removeSocketFile();
    })();
    return this.closing;
  }

  private async removeSocketFile(): Promise<void> {
    const l = this.listening;
    if (!l) return;
    // Only remove the file if it is still ours (a successor may already have replaced it).
    const st = await stat(l.path).catch(() => undefined);
    if (st && st.ino === l.ino) await unlink(l.path).catch(() => {});
  }

  private accept(socket: TtrpcTransport): void {
    if (this.closing) {
      socket.destroy();
      return;
    }
    const conn = new ServerConnection(this, socket);
    this.connections.add(conn);
    void conn.closed.then(() => this.connections.delete(conn));
  }

  /** @internal */
  lookup(service: string, method: string): RegisteredMethod | ErrorStatus {
    const svc = this.services.get(service);
    if (!svc) return { code: GrpcCode.UNIMPLEMENTED, message: `ttrpc: unknown service ${service}` };
    const m = svc.get(method);
    if (!m) return { code: GrpcCode.UNIMPLEMENTED, message: `ttrpc: unknown method ${method} of service ${service}` };
    return m;
  }

  /** @internal */
  get isClosing(): boolean {
    return this.closing !== undefined;
  }
}
