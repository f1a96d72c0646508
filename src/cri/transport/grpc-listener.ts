// berthd's gRPC socket when grpc-js serves it ([grpc] server = "grpc-js"): its own net.Server on
// the unix socket, handing each connection to grpc-js's connection injector, so that
// requests with any :authority are served (see authority.ts for what nghttp2 refuses and why
// grpc-go clients send it).
//
// Cost: Node's HTTP/2 wraps anything that is not a net.Socket in a JS stream adapter, which alone
// added about a fifth to a unary call's latency in a first measurement. So a connection is only
// proxied through the rewriter when it needs it (bench/version.bench.ts: a rewritten grpc-go
// connection's Version p50 is some 150-200 µs above a native one; native ones are unchanged). Every connection starts in a short look-ahead: berthd sends the server's first
// SETTINGS itself (clients wait for it before their first request), reads the client's bytes up
// to the first request's header block and the client's ACK of that SETTINGS, and then:
//   - the first request's :authority is acceptable (grpc-js, newer grpc-go): the bytes read so far
//     (minus that ACK, which Node never asked for) go back into the socket and the native socket
//     is handed over; Node's HTTP/2 reads the buffered bytes first. Nothing is in the way after.
//   - it is not (kubelet <= 1.26, crictl 1.26 send the socket path): the connection goes through
//     the rewriter (authority-rewriter.ts) for its whole life.
// A gRPC client uses one authority for all calls of a connection, which is what makes the first
// request representative.
//
// During the look-ahead berthd answers PINGs itself (nobody else is there yet); a client that
// sends something other than HTTP/2 is disconnected, as is one whose look-ahead grows past a cap.

import { createServer, type Server as NetServer, type Socket } from "node:net";
import { Duplex } from "node:stream";
import type { Logger } from "../../util/log.js";
import { AuthorityRewriter, MAX_HEADER_BLOCK } from "./authority-rewriter.js";
import { Flag, frame, FrameType, H2ProtocolError } from "./h2-frames.js";

/** Bytes a connection may send before its first request is complete. */
const LOOKAHEAD_CAP = MAX_HEADER_BLOCK + (256 << 10);
const SERVER_SETTINGS = frame(FrameType.SETTINGS, 0, 0);

/**
 * Where accepted connections go: grpc-js's connection injector. (berth's own server needs none
 * of this: it never checks :authority and takes the socket's connections itself.)
 */
export interface ConnectionSink {
  injectConnection(connection: Duplex): void;
  /** Ends every connection handed over. */
  destroy(): void;
}

export class GrpcUnixListener {
  private readonly netServer: NetServer;
  private readonly injector: ConnectionSink;
  private readonly sockets = new Set<Socket>();
  private readonly lookingAhead = new Set<Socket>();
  private closed = false;

  constructor(
    sink: ConnectionSink,
    private readonly log: Logger,
  ) {
    this.injector = sink;
    this.netServer = createServer((socket) => this.accept(socket));
  }

  /** Listens on a unix socket path (which must not exist); the caller's umask applies. */
  listen(path: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.netServer.once("error", reject);
      this.netServer.listen(path, () => {
        this.netServer.off("error", reject);
        this.netServer.on("error", (err) => this.log.error({ err }, "gRPC socket listener error"));
        resolve();
      });
    });
  }

  /**
   * Stops accepting connections and drops those still in the look-ahead (no call of theirs has
   * reached the server). Connections already handed over are drained by the gRPC server's
   * tryShutdown / forceShutdown; destroyAll() ends whatever is left after that.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    // The listening socket closes now (its path is unlinked); the server's 'close' event would
    // wait for every accepted connection, which is the gRPC server's shutdown's business.
    this.netServer.close();
    for (const s of this.lookingAhead) s.destroy();
  }

  /** Destroys every connection still open (after the gRPC server's shutdown). */
  destroyAll(): void {
    this.injector.destroy();
    for (const s of this.sockets) s.destroy();
  }

  private accept(socket: Socket): void {
    if (this.closed) {
      socket.destroy();
      return;
    }
    this.sockets.add(socket);
    this.lookingAhead.add(socket);
    socket.once("close", () => {
      this.sockets.delete(socket);
      this.lookingAhead.delete(socket);
    });

    let ackDropped = false;
    const rewriter: AuthorityRewriter = new AuthorityRewriter({
      intercept: (type, flags, payload) => {
        // The client's ACK of our SETTINGS is ours to consume: Node's session never sent it.
        if (type === FrameType.SETTINGS && flags & Flag.ACK && payload.length === 0 && !ackDropped) {
          ackDropped = true;
          return true;
        }
        if (type === FrameType.PING && !(flags & Flag.ACK) && payload.length === 8) {
          socket.write(frame(FrameType.PING, Flag.ACK, 0, payload));
          return true;
        }
        return false;
      },
      stopWhen: (): boolean => ackDropped && rewriter.requests > 0,
    });
    const forward: Buffer[] = [];
    let forwardBytes = 0;

    const refuse = (err: unknown) => {
      closeForError(this.log, err);
      socket.destroy();
    };
    const onError = (err: Error) => this.log.debug({ err: err.message }, "gRPC connection error before its first call");
    const onData = (chunk: Buffer) => {
      try {
        for (const b of rewriter.push(chunk)) {
          forward.push(b);
          forwardBytes += b.length;
        }
      } catch (err) {
        return refuse(err);
      }
      if (forwardBytes > LOOKAHEAD_CAP)
        return refuse(new H2ProtocolError(`no complete request in ${LOOKAHEAD_CAP} bytes`));
      if (!rewriter.isStopped) return;

      socket.off("data", onData);
      socket.off("error", onError);
      socket.pause();
      this.lookingAhead.delete(socket);
      rewriter.intercept = undefined;
      if (!rewriter.rewriting) {
        this.log.debug("gRPC connection: direct");
        socket.unshift(Buffer.concat([...forward, ...rewriter.takeHeld()]));
        this.injector.injectConnection(socket);
        return;
      }
      this.log.debug("gRPC connection: rewriting :authority");
      let rest: Buffer[];
      try {
        rest = rewriter.resume();
      } catch (err) {
        return refuse(err);
      }
      this.injector.injectConnection(new RewritingConnection(socket, rewriter, [...forward, ...rest], this.log));
    };
    socket.on("data", onData);
    socket.on("error", onError);
    socket.write(SERVER_SETTINGS);
  }
}

/** Logs why a connection is closed; whatever went wrong, only this connection pays for it. */
function closeForError(log: Logger, err: unknown): void {
  if (err instanceof H2ProtocolError) {
    log.debug({ err: err.message }, "gRPC connection closed: not a valid HTTP/2 client stream");
  } else {
    log.error({ err }, "gRPC connection closed: unexpected error in the :authority rewriter");
  }
}

/** The socket as Node's HTTP/2 sees it: reads pass through the rewriter, writes go straight out. */
class RewritingConnection extends Duplex {
  constructor(
    private readonly socket: Socket,
    private readonly rewriter: AuthorityRewriter,
    first: Buffer[],
    private readonly log: Logger,
  ) {
    super({ allowHalfOpen: false });
    for (const b of first) this.push(b);
    socket.on("data", (chunk: Buffer) => {
      let out: Buffer[];
      try {
        out = this.rewriter.push(chunk);
      } catch (err) {
        closeForError(this.log, err);
        this.destroy();
        return;
      }
      let more = true;
      for (const b of out) more = this.push(b);
      if (!more) socket.pause();
    });
    socket.on("end", () => this.push(null));
    // Ending the session is enough; an error event here would only be reported as unhandled.
    socket.on("error", (err) => {
      this.log.debug({ err: err.message }, "gRPC connection error");
      this.destroy();
    });
    socket.on("close", () => this.destroy());
    socket.resume();
  }

  override _read(): void {
    this.socket.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    this.socket.write(chunk, callback);
  }

  override _writev(chunks: { chunk: Buffer }[], callback: (err?: Error | null) => void): void {
    this.socket.cork();
    for (let i = 0; i < chunks.length - 1; i++) this.socket.write(chunks[i].chunk);
    this.socket.write(chunks[chunks.length - 1].chunk, callback);
    this.socket.uncork();
  }

  override _final(callback: (err?: Error | null) => void): void {
    this.socket.end(callback);
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    this.socket.destroy();
    callback(err);
  }
}
