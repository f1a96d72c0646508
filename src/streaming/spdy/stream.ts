// One SPDY stream as a Node Duplex: reads are the peer's DATA frames, writes become ours. The
// session (SpdyConnection) owns framing, windows and the stream table; a stream only asks it.
import { Duplex } from "node:stream";

import type { SpdyConnection } from "./connection.js";
import { RstStatus } from "./frames.js";
import type { SpdyHeaders } from "./header-codec.js";

const STREAM_BUFFER = 64 * 1024;

export class SpdyStream extends Duplex {
  /** Set when the peer reset the stream or the session ended: writes are dropped. */
  aborted = false;
  remoteClosed = false;
  localClosed = false;
  sendWindow: number;
  /** Bytes delivered to the reader that we have not yet re-opened the window for. */
  unacked = 0;

  constructor(
    readonly conn: SpdyConnection,
    readonly id: number,
    readonly headers: SpdyHeaders,
    sendWindow: number,
  ) {
    super({ readableHighWaterMark: STREAM_BUFFER, writableHighWaterMark: STREAM_BUFFER, allowHalfOpen: true });
    this.sendWindow = sendWindow;
  }

  /** First value of a header, by case-insensitive name. */
  header(name: string): string | undefined {
    return this.headers.get(name.toLowerCase())?.[0];
  }

  /** Accepts a peer-initiated stream (SYN_REPLY). */
  reply(headers: SpdyHeaders = new Map()): void {
    this.conn.sendReply(this, headers);
  }

  /** Tears the stream down in both directions (RST_STREAM). */
  reset(status: number = RstStatus.Cancel): void {
    this.conn.resetStream(this, status);
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.conn.writeData(this, chunk).then(() => cb(), cb);
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.conn.finishStream(this);
    cb();
  }

  override _read(): void {
    this.conn.streamWantsData(this);
  }

  /** Data from the peer. */
  deliver(data: Buffer): boolean {
    if (this.remoteClosed) return true;
    this.unacked += data.length;
    return this.push(data);
  }

  /** The peer will send nothing more. */
  endRemote(): void {
    if (this.remoteClosed) return;
    this.remoteClosed = true;
    this.push(null);
  }
}
