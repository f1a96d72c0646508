// The client side of a streaming ttrpc call, and how the receive loop hands frames to a call.
import type { Response } from "../gen/ttrpc/request.js";
import { GrpcCode, InvalidArgumentError, errorFromStatus } from "../util/errors.js";
import type { StreamKind } from "./client-options.js";
import { Flags } from "./frame.js";
import { MessageQueue } from "./queue.js";

/** A call in flight, unary or streaming, as the receive loop sees it. */
export interface PendingCall {
  /** A Response frame arrived (its status decides success). */
  response(resp: Response): void;
  /** A Data frame arrived. */
  data(flags: number, payload: Buffer): void;
  fail(err: Error): void;
}

/** What a stream needs from its connection: a way to send data frames. */
export interface StreamSender {
  sendData(id: number, flags: number, payload: Uint8Array): void;
}

/** The client side of a streaming call. */
export class ClientStream implements PendingCall {
  /** @internal */
  id = 0;
  /** Messages from the server, in order; ends when the server closes the stream, throws on error. */
  readonly responses = new MessageQueue<Buffer>();
  private localClosed: boolean;
  private settle!: () => void;
  /** Resolves when the stream is over, either way. */
  readonly finished = new Promise<void>((resolve) => {
    this.settle = resolve;
  });

  constructor(
    private readonly client: StreamSender,
    readonly label: string,
    readonly kind: StreamKind,
  ) {
    this.localClosed = !kind.requestStream;
  }

  /** False once the stream no longer takes messages from us. */
  get canSend(): boolean {
    return !this.localClosed;
  }

  /** Sends one message (only for request-streaming methods). */
  send(payload: Uint8Array): void {
    if (this.localClosed) throw new InvalidArgumentError(`ttrpc: ${this.label}: stream is closed for sending`);
    this.client.sendData(this.id, 0, payload);
  }

  /** Tells the server no more messages follow. */
  closeSend(): void {
    if (this.localClosed) return;
    this.localClosed = true;
    this.client.sendData(this.id, Flags.REMOTE_CLOSED | Flags.NO_DATA, new Uint8Array(0));
  }

  /** @internal */
  response(resp: Response): void {
    const status = resp.status;
    if (status && status.code !== GrpcCode.OK) {
      this.fail(remoteError(status.code, status.message));
      return;
    }
    if (!this.kind.responseStream || resp.payload.length > 0) this.responses.push(resp.payload);
    this.responses.end();
    this.localClosed = true;
    this.settle();
  }

  /** @internal */
  data(flags: number, payload: Buffer): void {
    if ((flags & Flags.NO_DATA) === 0) this.responses.push(payload);
    if ((flags & Flags.REMOTE_CLOSED) !== 0) {
      this.responses.end();
      this.localClosed = true;
      this.settle();
    }
  }

  /** @internal */
  fail(err: Error): void {
    this.localClosed = true;
    this.responses.fail(err);
    this.settle();
  }
}

/** A typed error for a status received from the peer; the wire code stays on `grpcCode`. */
export function remoteError(code: number, message: string): Error {
  return Object.assign(errorFromStatus(code, message), { grpcCode: code });
}
