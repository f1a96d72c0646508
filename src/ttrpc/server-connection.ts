// One accepted ttrpc connection: frame parsing, stream-id rules, dispatch of requests to
// handlers, streaming inboxes, and read-side flow control.
import { once } from "node:events";

import { Request, Response } from "../gen/ttrpc/request.js";
import { DeadlineExceededError, GrpcCode, InvalidArgumentError, UnavailableError } from "../util/errors.js";
import { type MethodDefinition, type TtrpcTransport, metadataFromKeyValues } from "./definition.js";
import { Flags, type FrameHeader, FrameParser, MessageType, encodeFrame } from "./frame.js";
import { MessageQueue } from "./queue.js";
import { LazyAbort, oversizedResponse, statusOfError } from "./server-status.js";
import type { CallContext, ConnectionHost, ErrorStatus, RegisteredMethod } from "./server-types.js";

interface ActiveCall {
  controller: LazyAbort;
  timer: NodeJS.Timeout | undefined;
  /** Client-to-server messages of a streaming-request call. */
  inbox: MessageQueue<unknown> | undefined;
  def: MethodDefinition;
}

/** One accepted connection: its own frame parser, stream-id bookkeeping and in-flight calls. */
export class ServerConnection {
  private readonly parser: FrameParser;
  private readonly calls = new Map<number, ActiveCall>();
  private lastStreamId = 0;
  private draining = false;
  private dead = false;
  private paused = false;
  private corked = false;
  readonly closed: Promise<void>;

  constructor(
    private readonly server: ConnectionHost,
    private readonly socket: TtrpcTransport,
  ) {
    this.parser = new FrameParser(
      {
        frame: (h, p) => this.onFrame(h, p),
        oversized: (h, limit) =>
          this.sendStatus(h.streamId, {
            code: GrpcCode.RESOURCE_EXHAUSTED,
            message: `ttrpc: message length ${h.length} exceeds maximum message size of ${limit}`,
          }),
      },
      server.maxMessageSize,
    );
    this.closed = new Promise((resolve) => socket.once("close", () => resolve()));
    socket.on("data", (chunk: Buffer) => this.parser.push(chunk));
    socket.on("drain", () => this.updateFlow());
    socket.on("error", (err: NodeJS.ErrnoException) => {
      // A client going away mid-write is routine; anything else is worth a line.
      if (err.code !== "ECONNRESET" && err.code !== "EPIPE")
        this.server.logger.warn({ err }, "ttrpc: connection error");
    });
    socket.on("close", () => this.teardown(new UnavailableError("ttrpc: connection closed")));
  }

  /** Graceful close: finish what is in flight, then end the connection. */
  drain(): void {
    this.draining = true;
    if (this.calls.size === 0) this.socket.end();
  }

  destroy(reason: Error): void {
    this.teardown(reason);
    this.socket.destroy();
  }

  private teardown(reason: Error): void {
    if (this.dead) return;
    this.dead = true;
    this.parser.stop();
    for (const call of this.calls.values()) {
      clearTimeout(call.timer);
      call.inbox?.fail(reason);
      call.controller.abort(reason);
    }
    this.calls.clear();
  }

  /** A peer that breaks the framing protocol gets its connection dropped; others are unaffected. */
  private protocolError(message: string): void {
    this.server.logger.warn({ reason: message }, "ttrpc: dropping connection after protocol error");
    this.destroy(new UnavailableError(`ttrpc: ${message}`));
  }

  private onFrame(h: FrameHeader, payload: Buffer): void {
    if (this.dead) return;
    if (h.streamId % 2 !== 1) {
      this.sendStatus(h.streamId, {
        code: GrpcCode.INVALID_ARGUMENT,
        message: "ttrpc: stream id must be odd for client initiated streams",
      });
      return;
    }
    switch (h.type) {
      case MessageType.REQUEST:
        this.onRequest(h, payload);
        return;
      case MessageType.DATA:
        this.onData(h, payload);
        return;
      default:
        this.protocolError(`unexpected message type ${h.type} on stream ${h.streamId}`);
    }
  }

  private onRequest(h: FrameHeader, payload: Buffer): void {
    const id = h.streamId;
    if (id <= this.lastStreamId) {
      this.sendStatus(id, {
        code: GrpcCode.INVALID_ARGUMENT,
        message: "ttrpc: stream id cannot be reused and must increase",
      });
      return;
    }
    this.lastStreamId = id;
    let req: Request;
    try {
      req = Request.decode(payload);
    } catch (err) {
      this.protocolError(`undecodable request on stream ${id}: ${(err as Error).message}`);
      return;
    }
    if (this.draining || this.server.isClosing) {
      this.sendStatus(id, { code: GrpcCode.UNAVAILABLE, message: "ttrpc: server is shutting down" });
      return;
    }
    const found = this.server.lookup(req.service, req.method);
    if (!("def" in found)) {
      this.sendStatus(id, found);
      return;
    }
    const { def, impl } = found;

    const controller = new LazyAbort();
    let deadline: number | undefined;
    let timer: NodeJS.Timeout | undefined;
    if (req.timeoutNano !== 0n) {
      const ms = Number(req.timeoutNano / 1_000_000n);
      if (ms <= 0) {
        this.sendStatus(id, {
          code: GrpcCode.DEADLINE_EXCEEDED,
          message: "ttrpc: deadline exceeded before the call started",
        });
        return;
      }
      deadline = Date.now() + ms;
      // setTimeout caps at ~24.8 days; a longer deadline is as good as none.
      if (ms < 2 ** 31) {
        timer = setTimeout(
          () =>
            controller.abort(
              new DeadlineExceededError(`ttrpc: deadline of ${ms}ms exceeded for ${req.service}/${req.method}`),
            ),
          ms,
        );
      }
    }

    let first: unknown;
    try {
      first = req.payload.length > 0 || !def.requestStream ? def.requestType.decode(req.payload) : undefined;
    } catch (err) {
      clearTimeout(timer);
      this.sendStatus(id, {
        code: GrpcCode.INVALID_ARGUMENT,
        message: `ttrpc: cannot decode ${req.service}/${req.method} request: ${(err as Error).message}`,
      });
      return;
    }

    let inbox: MessageQueue<unknown> | undefined;
    if (def.requestStream) {
      inbox = new MessageQueue();
      if (first !== undefined) inbox.push(first);
      // A request without "remote open" means the client sends nothing more.
      if ((h.flags & Flags.REMOTE_OPEN) === 0) inbox.end();
    }
    const call: ActiveCall = { controller, timer, inbox, def };
    this.calls.set(id, call);
    this.updateFlow();

    const ctx: CallContext = {
      service: req.service,
      method: req.method,
      metadata: metadataFromKeyValues(req.metadata),
      // Most handlers never look at their signal, and creating one costs more than the rest of a call.
      get signal() {
        return controller.signal;
      },
      deadline,
    };
    void this.run(id, call, impl, def.requestStream ? inbox : first, ctx);
  }

  private async run(
    id: number,
    call: ActiveCall,
    impl: RegisteredMethod["impl"],
    input: unknown,
    ctx: CallContext,
  ): Promise<void> {
    const { def, controller } = call;
    try {
      const out = (impl as (input: unknown, ctx: CallContext) => unknown)(input, ctx);
      if (def.responseStream) {
        for await (const msg of out as AsyncIterable<unknown>) {
          if (!this.calls.has(id)) return;
          const bytes = def.responseType.encode(msg).finish();
          if (bytes.length > this.server.maxMessageSize)
            throw oversizedResponse(ctx, bytes.length, this.server.maxMessageSize);
          // An empty message is still a message: Go peers send it as data with no flags too.
          this.send(encodeFrame(id, MessageType.DATA, 0, bytes));
          // A handler can produce faster than the client reads; wait rather than buffer without bound.
          if (this.socket.writableNeedDrain) {
            await Promise.race([once(this.socket, "drain").catch(() => {}), this.closed]);
          }
        }
        if (!this.calls.has(id)) return;
        this.send(encodeFrame(id, MessageType.DATA, Flags.REMOTE_CLOSED | Flags.NO_DATA, Buffer.alloc(0)));
      } else {
        const result = await out;
        if (!this.calls.has(id)) return;
        const bytes = def.responseType.encode(result).finish();
        const frame = Response.encode({
          status: { code: GrpcCode.OK, message: "", details: [] },
          payload: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength),
        }).finish();
        if (frame.length > this.server.maxMessageSize)
          throw oversizedResponse(ctx, frame.length, this.server.maxMessageSize);
        this.send(encodeFrame(id, MessageType.RESPONSE, 0, frame));
      }
    } catch (err) {
      if (this.calls.has(id)) this.sendStatus(id, statusOfError(err, controller));
    } finally {
      this.finishCall(id);
    }
  }

  private finishCall(id: number): void {
    const call = this.calls.get(id);
    if (!call) return;
    clearTimeout(call.timer);
    call.inbox?.end();
    this.calls.delete(id);
    this.updateFlow();
    if (this.draining && this.calls.size === 0) this.socket.end();
  }

  private onData(h: FrameHeader, payload: Buffer): void {
    const call = this.calls.get(h.streamId);
    const inbox = call?.inbox;
    if (!call || !inbox || inbox.done) {
      this.sendStatus(h.streamId, {
        code: GrpcCode.INVALID_ARGUMENT,
        message: `ttrpc: stream ${h.streamId} is not open for data`,
      });
      return;
    }
    if ((h.flags & Flags.NO_DATA) === 0) {
      let msg: unknown;
      try {
        msg = call.def.requestType.decode(payload);
      } catch (err) {
        this.failCall(h.streamId, {
          code: GrpcCode.INVALID_ARGUMENT,
          message: `ttrpc: cannot decode stream message: ${(err as Error).message}`,
        });
        return;
      }
      if (inbox.size >= this.server.maxStreamBuffer) {
        this.failCall(h.streamId, { code: GrpcCode.RESOURCE_EXHAUSTED, message: "ttrpc: stream receive buffer full" });
        return;
      }
      inbox.push(msg);
    }
    if ((h.flags & Flags.REMOTE_CLOSED) !== 0) inbox.end();
  }

  /** Ends a call early with an error status (its handler is aborted and its output dropped). */
  private failCall(id: number, status: ErrorStatus): void {
    const call = this.calls.get(id);
    if (!call) return;
    this.sendStatus(id, status);
    const reason = new InvalidArgumentError(status.message);
    call.inbox?.fail(reason);
    call.controller.abort(reason);
    this.finishCall(id);
  }

  private sendStatus(id: number, status: ErrorStatus): void {
    const frame = Response.encode({
      status: { code: status.code, message: status.message, details: [] },
      payload: Buffer.alloc(0),
    }).finish();
    this.send(encodeFrame(id, MessageType.RESPONSE, 0, frame));
  }

  private send(frame: Buffer): void {
    if (this.dead || this.socket.destroyed || this.socket.writableEnded) return;
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
    this.updateFlow();
  }

  /** Stop reading while too many calls are in flight or the client is not taking our answers. */
  private updateFlow(): void {
    if (this.dead) return;
    const stop = this.calls.size >= this.server.maxConcurrentCalls || this.socket.writableNeedDrain;
    if (stop && !this.paused) {
      this.paused = true;
      this.socket.pause();
    } else if (!stop && this.paused) {
      this.paused = false;
      this.socket.resume();
    }
  }
}
