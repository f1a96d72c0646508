// Channels multiplexed over one WebSocket (apimachinery pkg/util/httpstream/wsstream/conn.go).
// Every message starts with its channel number: one raw byte in the binary protocols, one ASCII
// digit followed by base64 data (a text message) in the base64 ones. With v5.channel.k8s.io the
// client may also send [255, channel] to close that channel's input (the CLOSE signal).
import { Duplex } from "node:stream";
import type { WebSocket } from "ws";

export const STREAM_CLOSE = 255;

export interface ChannelOptions {
  base64: boolean;
  /** v5: honour [255, channel] from the client. */
  closeSignal: boolean;
  /** Channels the client may send on; data on the others is dropped (wsstream's IgnoreChannel). */
  readable: (channel: number) => boolean;
}

/**
 * One channel: its readable side carries what the client sent on it, its writable side what we
 * send. Writes complete when the socket took them, so a slow client pushes back on the writer.
 */
export class WsChannel extends Duplex {
  constructor(
    private readonly mux: WsChannels,
    readonly num: number,
  ) {
    super({ readableHighWaterMark: 64 * 1024, writableHighWaterMark: 64 * 1024, allowHalfOpen: true });
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.mux.send(this.num, chunk, cb);
  }

  override _read(): void {
    this.mux.resumeInput();
  }

  /** Whether the client can still send on this channel. */
  inputOpen = true;

  /** Delivers client data; false when the reader's buffer is full. */
  deliver(data: Buffer): boolean {
    return this.inputOpen ? this.push(data) : true;
  }

  endInput(): void {
    if (!this.inputOpen) return;
    this.inputOpen = false;
    this.push(null);
  }
}

export class WsChannels {
  private readonly channels: WsChannel[] = [];
  private pausedInput = false;
  private ended = false;

  constructor(
    private readonly ws: WebSocket,
    count: number,
    private readonly opts: ChannelOptions,
  ) {
    for (let i = 0; i < count; i++) this.channels.push(new WsChannel(this, i));
    ws.on("message", (data: Buffer, isBinary: boolean) => this.onMessage(data, isBinary));
    ws.on("close", () => this.endInput());
  }

  channel(n: number): WsChannel {
    return this.channels[n];
  }

  /** Sends `data` on channel `num`; `cb` runs once the socket has taken it. */
  send(num: number, data: Buffer, cb: (err?: Error | null) => void): void {
    if (this.ws.readyState !== this.ws.OPEN) {
      // The client is gone; the session is being torn down. Drop the output.
      cb();
      return;
    }
    const done = () => cb();
    if (this.opts.base64)
      this.ws.send(String.fromCharCode(48 + num) + data.toString("base64"), { binary: false }, done);
    else this.ws.send(Buffer.concat([Buffer.from([num]), data]), { binary: true }, done);
  }

  resumeInput(): void {
    if (this.pausedInput && this.channels.every((c) => c.readableLength < c.readableHighWaterMark)) {
      this.pausedInput = false;
      this.ws.resume();
    }
  }

  private onMessage(data: Buffer, _isBinary: boolean): void {
    if (data.length === 0) return;
    if (this.opts.closeSignal && data[0] === STREAM_CLOSE) {
      const ch = data.length === 2 ? this.channels[data[1]] : undefined;
      if (!ch) {
        // kubelet stops serving the connection on a malformed close signal.
        this.ws.close(1002, "invalid close signal");
        return;
      }
      ch.endInput();
      return;
    }
    let num = data[0];
    let payload = data.subarray(1);
    if (this.opts.base64) {
      num -= 48;
      payload = Buffer.from(payload.toString("latin1"), "base64");
    }
    const ch = this.channels[num];
    if (!ch || !this.opts.readable(num)) return; // ignored, as upstream does
    if (!ch.deliver(payload) && !this.pausedInput) {
      this.pausedInput = true;
      this.ws.pause();
    }
  }

  private endInput(): void {
    if (this.ended) return;
    this.ended = true;
    for (const ch of this.channels) ch.endInput();
  }
}
