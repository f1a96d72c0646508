// ttrpc client over a unix socket, wire-compatible with containerd/ttrpc (Go).
// One connection carries any number of concurrent calls, told apart by odd, increasing
// stream ids. When the connection dies every pending call fails at once with Unavailable
// and a 'close' event tells the owner (e.g. the shim manager) that the peer is gone.
import { EventEmitter } from "node:events";
import net from "node:net";

import { Request, Response } from "../gen/ttrpc/request.js";
import {
  CanceledError,
  DeadlineExceededError,
  GrpcCode,
  InvalidArgumentError,
  ResourceExhaustedError,
  UnavailableError,
} from "../util/errors.js";
import { currentCallObserver, withMetadata } from "./call-observer.js";
import type { CallOptions, ClientOptions, StreamKind } from "./client-options.js";
import { ClientStream, type PendingCall, remoteError } from "./client-stream.js";
import { type TtrpcTransport, metadataToKeyValues, socketPath } from "./definition.js";
import { DEFAULT_MAX_MESSAGE_SIZE, Flags, type FrameHeader, FrameParser, MessageType, encodeFrame } from "./frame.js";

export { setCallObserver } from "./call-observer.js";
export type { CallObserver } from "./call-observer.js";
export type { CallOptions, ClientOptions, StreamKind } from "./client-options.js";
export { ClientStream } from "./client-stream.js";
export { createClient } from "./typed-client.js";
export type { ServiceClient } from "./typed-client.js";

const MAX_STREAM_ID = 0xffffffff;

/** Events: 'close' (err: Error | undefined), once, when the connection is gone. */
export class TtrpcClient extends EventEmitter<{ close: [Error | undefined] }> {
  private readonly parser: FrameParser;
  private readonly pending = new Map<number, PendingCall>();
  private nextStreamId = 1;
  private closedWith: Error | undefined;
  private lastSocketError: Error | undefined;
  private corked = false;
  readonly maxMessageSize: number;

  /** Connects to a ttrpc server at a socket path (a `unix://` prefix is accepted). */
  static connect(address: string, opts: ClientOptions = {}): Promise<TtrpcClient> {
    let path: string;
    try {
      path = socketPath(address);
    } catch (err) {
      return Promise.reject(err);
    }
    const timeoutMs = opts.connectTimeoutMs ?? 10_000;
    return new Promise((resolve, reject) => {
      const socket = net.createConnection({ path });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new UnavailableError(`ttrpc: connect ${path}: timed out after ${timeoutMs}ms`));
      }, timeoutMs);
      socket.once("error", (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        reject(new UnavailableError(`ttrpc: connect ${path}: ${err.code ?? err.message}`, { cause: err }));
      });
      socket.once("connect", () => {
        clearTimeout(timer);
        socket.removeAllListeners("error");
        resolve(new TtrpcClient(socket, path, opts));
      });
    });
  }

  /** Wraps an already-connected socket (or another duplex byte stream). */
  constructor(
    private readonly socket: TtrpcTransport,
    readonly address: string = "(socket)",
    opts: ClientOptions = {},
  ) {
    super();
    this.maxMessageSize = opts.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE;
    this.parser = new FrameParser(
      {
        frame: (h, p) => this.onFrame(h, p),
        oversized: (h, limit) => {
          const call = this.pending.get(h.streamId);
          if (!call) return;
          this.pending.delete(h.streamId);
          call.fail(
            new ResourceExhaustedError(
              `ttrpc: response on stream ${h.streamId} is ${h.length} bytes, over the client's maximum message size of ${limit}`,
            ),
          );
        },
      },
      this.maxMessageSize,
    );
    socket.setNoDelay?.(true);
    socket.on("data", (chunk: Buffer) => this.parser.push(chunk));
    socket.on("error", (err) => {
      this.lastSocketError = err;
    });
    socket.on("close", () => {
      const cause = this.lastSocketError;
      this.shutdown(
        new UnavailableError(`ttrpc: connection to ${this.address} closed${cause ? `: ${cause.message}` : ""}`, {
          cause,
        }),
      );
    });
  }

  /** True once the connection is gone (closed locally, by the peer, or after a protocol error). */
  get closed(): boolean {
    return this.closedWith !== undefined;
  }

  /** Number of calls awaiting an answer. */
  get pendingCalls(): number {
    return this.pending.size;
  }

  /**
   * Closes the connection; pending calls fail with UnavailableError. The 'close' event
   * fires with no error for a local close and with the reason when the peer went away.
   */
  close(): void {
    this.shutdown(undefined);
    this.socket.destroy();
  }

  /** Lets the process exit while the connection is idle-open (and undoes it). */
  unref(): this {
    this.socket.unref?.();
    return this;
  }

  ref(): this {
    this.socket.ref?.();
    return this;
  }

  /** A unary call with an encoded request; resolves with the encoded response. */
  call(service: string, method: string, payload: Uint8Array, opts: CallOptions = {}): Promise<Buffer> {
    const observer = currentCallObserver();
    if (observer) {
      return observer(`${service}/${method}`, (extra) =>
        this.unary(service, method, payload, extra ? { ...opts, metadata: withMetadata(opts.metadata, extra) } : opts),
      );
    }
    return this.unary(service, method, payload, opts);
  }

  private unary(service: string, method: string, payload: Uint8Array, opts: CallOptions): Promise<Buffer> {
    return new Promise<Buffer>((resolve, reject) => {
      const label = `${service}/${method}`;
      let timer: NodeJS.Timeout | undefined;
      let id = 0;
      const cleanup = () => {
        clearTimeout(timer);
        opts.signal?.removeEventListener("abort", onAbort);
      };
      const abandon = (err: Error) => {
        if (this.pending.get(id) === entry) this.pending.delete(id);
        cleanup();
        reject(err);
      };
      const onAbort = () => abandon(new CanceledError(`ttrpc: ${label} canceled`, { cause: opts.signal?.reason }));
      const entry: PendingCall = {
        response: (resp) => {
          cleanup();
          const status = resp.status;
          if (status && status.code !== GrpcCode.OK) reject(remoteError(status.code, status.message));
          else resolve(resp.payload);
        },
        data: () => {
          this.pending.delete(id);
          cleanup();
          reject(new InvalidArgumentError(`ttrpc: server sent stream data for unary call ${label}`));
        },
        fail: (err) => {
          cleanup();
          reject(err);
        },
      };
      try {
        id = this.start(service, method, payload, 0, opts, entry);
      } catch (err) {
        reject(err as Error);
        return;
      }
      if (opts.timeoutMs !== undefined) {
        timer = setTimeout(
          () => abandon(new DeadlineExceededError(`ttrpc: ${label} exceeded its ${opts.timeoutMs}ms deadline`)),
          opts.timeoutMs,
        );
      }
      opts.signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  /**
   * Opens a streaming call. With `requestStream`, send messages with `send()` and finish with
   * `closeSend()`; otherwise `firstPayload` is the single request. Read answers from `responses`.
   */
  openStream(
    service: string,
    method: string,
    kind: StreamKind,
    firstPayload: Uint8Array | undefined,
    opts: CallOptions = {},
  ): ClientStream {
    const label = `${service}/${method}`;
    const stream = new ClientStream(this, label, kind);
    const flags = kind.requestStream ? Flags.REMOTE_OPEN : Flags.REMOTE_CLOSED;
    stream.id = this.start(service, method, firstPayload ?? new Uint8Array(0), flags, opts, stream);
    if (opts.timeoutMs !== undefined) {
      const timer = setTimeout(
        () =>
          this.failStream(
            stream.id,
            new DeadlineExceededError(`ttrpc: ${label} exceeded its ${opts.timeoutMs}ms deadline`),
          ),
        opts.timeoutMs,
      );
      void stream.finished.then(() => clearTimeout(timer));
    }
    if (opts.signal) {
      const onAbort = () =>
        this.failStream(stream.id, new CanceledError(`ttrpc: ${label} canceled`, { cause: opts.signal?.reason }));
      opts.signal.addEventListener("abort", onAbort, { once: true });
      void stream.finished.then(() => opts.signal?.removeEventListener("abort", onAbort));
    }
    return stream;
  }

  /** @internal Sends a data frame on an open stream. */
  sendData(id: number, flags: number, payload: Uint8Array): void {
    if (this.closedWith) throw this.closedError();
    if (payload.length > this.maxMessageSize) {
      throw new ResourceExhaustedError(
        `ttrpc: stream message of ${payload.length} bytes is over the maximum message size of ${this.maxMessageSize}`,
      );
    }
    this.write(encodeFrame(id, MessageType.DATA, flags, payload));
  }

  /** @internal */
  failStream(id: number, err: Error): void {
    const call = this.pending.get(id);
    if (!call) return;
    this.pending.delete(id);
    call.fail(err);
  }

  private start(
    service: string,
    method: string,
    payload: Uint8Array,
    flags: number,
    opts: CallOptions,
    entry: PendingCall,
  ): number {
    if (this.closedWith) throw this.closedError();
    const label = `${service}/${method}`;
    if (opts.signal?.aborted) throw new CanceledError(`ttrpc: ${label} canceled`, { cause: opts.signal.reason });
    const timeoutMs = opts.timeoutMs;
    if (timeoutMs !== undefined && !(timeoutMs > 0))
      throw new InvalidArgumentError(`ttrpc: ${label}: timeoutMs must be positive`);
    const bytes = Request.encode({
      service,
      method,
      payload: Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength),
      timeoutNano: timeoutMs === undefined ? 0n : BigInt(Math.ceil(timeoutMs * 1e6)),
      metadata: metadataToKeyValues(opts.metadata),
    }).finish();
    if (bytes.length > this.maxMessageSize) {
      throw new ResourceExhaustedError(
        `ttrpc: request to ${label} is ${bytes.length} bytes, over the maximum message size of ${this.maxMessageSize}; not sent`,
      );
    }
    if (this.nextStreamId > MAX_STREAM_ID) {
      throw new UnavailableError(`ttrpc: connection to ${this.address} has used up its stream ids; reconnect`);
    }
    const id = this.nextStreamId;
    this.nextStreamId += 2;
    this.pending.set(id, entry);
    this.write(encodeFrame(id, MessageType.REQUEST, flags, bytes));
    return id;
  }

  private write(frame: Buffer): void {
    // Coalesce the frames written in one tick into a single writev.
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(() => {
        this.corked = false;
        this.socket.uncork();
      });
    }
    this.socket.write(frame);
  }

  private onFrame(h: FrameHeader, payload: Buffer): void {
    if (this.closedWith) return;
    switch (h.type) {
      case MessageType.RESPONSE: {
        let resp: Response;
        try {
          resp = Response.decode(payload);
        } catch (err) {
          this.protocolError(`undecodable response on stream ${h.streamId}: ${(err as Error).message}`);
          return;
        }
        const call = this.pending.get(h.streamId);
        // No caller: it timed out or was canceled already; the late answer is dropped.
        if (!call) return;
        this.pending.delete(h.streamId);
        call.response(resp);
        return;
      }
      case MessageType.DATA: {
        const call = this.pending.get(h.streamId);
        if (!call) return;
        if ((h.flags & Flags.REMOTE_CLOSED) !== 0) this.pending.delete(h.streamId);
        call.data(h.flags, payload);
        return;
      }
      default:
        this.protocolError(`unexpected message type ${h.type} on stream ${h.streamId}`);
    }
  }

  private protocolError(message: string): void {
    this.shutdown(
      new UnavailableError(`ttrpc: connection to ${this.address} dropped after a protocol error: ${message}`),
    );
    this.socket.destroy();
  }

  private closedError(): UnavailableError {
    return new UnavailableError(`ttrpc: connection to ${this.address} is closed`, { cause: this.closedWith });
  }

  /** Fails everything pending exactly once and emits 'close'. */
  private shutdown(reason: Error | undefined): void {
    if (this.closedWith) return;
    this.closedWith = reason ?? new UnavailableError(`ttrpc: client for ${this.address} closed`);
    this.parser.stop();
    const err = this.closedWith;
    const calls = [...this.pending.values()];
    this.pending.clear();
    for (const call of calls) call.fail(err);
    this.emit("close", reason);
  }
}
