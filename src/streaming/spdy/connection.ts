// A SPDY/3.1 session over an upgraded socket: stream multiplexing, the shared header
// compression contexts, PING and GOAWAY, and flow control.
//
// Flow control. SPDY/3.1 gives every stream and the session a 64 KiB send window that the
// receiver re-opens with WINDOW_UPDATE. The peers this server really talks to (kubelet, kubectl,
// crictl: all built on moby/spdystream) implement none of it: they never send WINDOW_UPDATE or
// SETTINGS and ignore ours. Enforcing our send window against them would stall every stream
// after 64 KiB, so the window is only enforced once the peer shows it does flow control (a
// SETTINGS with INITIAL_WINDOW_SIZE or any WINDOW_UPDATE); `enforcePeerWindows` turns it on from
// the start for peers known to be strict. In the other direction we always send WINDOW_UPDATEs
// as the reader consumes data (harmless to spdystream), and against a peer that ignores our
// window we fall back on TCP: when a stream's read buffer is full the socket stops being read,
// exactly as spdystream's bounded frame queue does. Outgoing data waits for the socket to drain,
// so a slow reader pushes back on the writer through each stream's bounded write buffer.
import { EventEmitter } from "node:events";
import type { Duplex } from "node:stream";
import {
  DEFAULT_WINDOW,
  FLAG_FIN,
  FLAG_UNIDIRECTIONAL,
  type Frame,
  RstStatus,
  SETTINGS_INITIAL_WINDOW_SIZE,
  SpdyProtocolError,
  encodeData,
  encodeGoAway,
  encodePing,
  encodeRstStream,
  encodeSettings,
  encodeSynReply,
  encodeSynStream,
  encodeWindowUpdate,
  parseFrame,
} from "./frames.js";
import { HeaderCompressor, HeaderDecompressor, type SpdyHeaders, headersFrom } from "./header-codec.js";
import { OutgoingQueue } from "./outgoing-queue.js";
import { SpdyStream } from "./stream.js";

export { SpdyStream } from "./stream.js";

export interface SpdyConnectionOptions {
  /** The server side accepts odd (client) stream ids and creates even ones. */
  server: boolean;
  /** Largest DATA payload we send in one frame. */
  maxDataFrame?: number;
  /** Treat the peer as a strict SPDY/3.1 implementation from the first byte (see the header). */
  enforcePeerWindows?: boolean;
  /** Announce our initial window with SETTINGS when the session starts. */
  announceSettings?: boolean;
  /** How long close() waits for the peer to hang up before it destroys the socket. */
  closeGraceMs?: number;
}

interface PendingOpen {
  resolve: (s: SpdyStream) => void;
  reject: (e: Error) => void;
}

export class SpdyConnection extends EventEmitter {
  private readonly compressor = new HeaderCompressor();
  private readonly decompressor = new HeaderDecompressor();
  private readonly streams = new Map<number, SpdyStream>();
  private readonly opening = new Map<number, PendingOpen>();
  private readonly maxDataFrame: number;
  private readonly closeGraceMs: number;
  private nextStreamId: number;
  private lastPeerStreamId = 0;
  private inbuf: Buffer = Buffer.alloc(0);
  private pumping = false;
  private readonly out: OutgoingQueue;
  private readonly blocked = new Set<SpdyStream>();
  private pausedByUs = false;
  private peerFlowControl: boolean;
  private peerInitialWindow = DEFAULT_WINDOW;
  private sessionSendWindow = DEFAULT_WINDOW;
  private sessionUnacked = 0;
  private readonly receiveWindow = DEFAULT_WINDOW;
  private windowWaiters: (() => void)[] = [];
  private goAwaySent = false;
  private peerEnded = false;
  private peerEndHandled = false;
  private socketClosed = false;
  private peerWentAway = false;
  private closed = false;

  constructor(
    readonly socket: Duplex,
    opts: SpdyConnectionOptions,
    head?: Buffer,
  ) {
    super();
    this.nextStreamId = opts.server ? 2 : 1;
    this.maxDataFrame = opts.maxDataFrame ?? 32 * 1024;
    this.closeGraceMs = opts.closeGraceMs ?? 5000;
    this.peerFlowControl = opts.enforcePeerWindows ?? false;
    this.isServer = opts.server;
    this.out = new OutgoingQueue(socket, {
      canWrite: () => !this.closed && !this.socketClosed,
      failed: (err) => this.fail(err),
      drained: () => this.wakeWindowWaiters(),
    });
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    // Frames already received are handled before the end of the socket is: handling can wait
    // on the header decompressor, and a stream's data must not be cut off by its EOF.
    socket.on("end", () => {
      this.peerEnded = true;
      this.afterPump();
    });
    socket.on("close", () => {
      this.socketClosed = true;
      this.afterPump();
    });
    socket.on("error", () => {
      // 'close' follows; the session ends there.
    });
    socket.on("drain", () => this.wakeWindowWaiters());
    if (opts.announceSettings) {
      this.enqueue(encodeSettings([{ id: SETTINGS_INITIAL_WINDOW_SIZE, value: this.receiveWindow }]));
    }
    if (head && head.length > 0) this.onData(head);
  }

  private readonly isServer: boolean;

  get isClosed(): boolean {
    return this.closed;
  }

  /** Opens a stream and waits for the peer's SYN_REPLY, as spdystream's CreateStream does. */
  createStream(
    headers: SpdyHeaders | Record<string, string | string[]>,
    opts: { fin?: boolean } = {},
  ): Promise<SpdyStream> {
    if (this.closed || this.goAwaySent || this.peerWentAway) {
      return Promise.reject(new Error("SPDY session is closing"));
    }
    const h = headers instanceof Map ? headers : headersFrom(headers);
    const id = this.nextStreamId;
    this.nextStreamId += 2;
    const s = new SpdyStream(this, id, h, this.peerInitialWindow);
    this.streams.set(id, s);
    if (opts.fin) {
      s.localClosed = true;
      s.end();
    }
    const flags = opts.fin ? FLAG_FIN : 0;
    this.enqueue(this.compressor.compress(h).then((block) => encodeSynStream(id, flags, 0, block)));
    return new Promise<SpdyStream>((resolve, reject) => this.opening.set(id, { resolve: () => resolve(s), reject }));
  }

  sendReply(s: SpdyStream, headers: SpdyHeaders): void {
    if (this.closed) return;
    this.enqueue(this.compressor.compress(headers).then((block) => encodeSynReply(s.id, 0, block)));
  }

  resetStream(s: SpdyStream, status: number): void {
    if (!s.aborted && !(s.localClosed && s.remoteClosed) && !this.closed) this.enqueue(encodeRstStream(s.id, status));
    this.abortStream(s);
  }

  /** Sends `chunk` on `s`, split into frames, within the windows, after the socket drains. */
  async writeData(s: SpdyStream, chunk: Buffer): Promise<void> {
    let off = 0;
    while (off < chunk.length) {
      if (s.aborted || this.closed) return;
      let n = Math.min(chunk.length - off, this.maxDataFrame);
      if (this.peerFlowControl) {
        const avail = Math.min(s.sendWindow, this.sessionSendWindow);
        if (avail <= 0) {
          await this.waitForWindow();
          continue;
        }
        n = Math.min(n, avail);
      }
      if (this.socket.writableNeedDrain || this.out.length > 0) {
        await this.waitForWindow();
        if (this.socket.writableNeedDrain) continue;
      }
      s.sendWindow -= n;
      this.sessionSendWindow -= n;
      this.enqueue(encodeData(s.id, chunk.subarray(off, off + n), false));
      off += n;
    }
  }

  finishStream(s: SpdyStream): void {
    if (s.localClosed || s.aborted) return;
    s.localClosed = true;
    if (!this.closed) this.enqueue(encodeData(s.id, Buffer.alloc(0), true));
    this.forgetIfDone(s);
  }

  streamWantsData(s: SpdyStream): void {
    this.blocked.delete(s);
    this.ackStream(s, true);
    if (this.blocked.size === 0 && this.pausedByUs) {
      this.pausedByUs = false;
      this.socket.resume();
    }
  }

  /** Sends GOAWAY, flushes what is queued and ends the socket; destroys it if the peer lingers. */
  async close(): Promise<void> {
    if (this.closed) return;
    if (!this.goAwaySent) {
      this.goAwaySent = true;
      this.enqueue(encodeGoAway(this.lastPeerStreamId, 0));
    }
    await this.flushed();
    if (this.closed) return;
    this.socket.end();
    const timer = setTimeout(() => this.socket.destroy(), this.closeGraceMs);
    timer.unref();
    this.socket.once("close", () => clearTimeout(timer));
  }

  destroy(): void {
    this.socket.destroy();
  }

  /** Resolves once everything queued so far has been handed to the socket. */
  flushed(): Promise<void> {
    return this.out.flushed();
  }

  private enqueue(item: Buffer | Promise<Buffer>): void {
    this.out.push(item);
  }

  // ---- incoming frames

  private onData(chunk: Buffer): void {
    this.inbuf = this.inbuf.length === 0 ? chunk : Buffer.concat([this.inbuf, chunk]);
    if (!this.pumping) void this.pump();
  }

  private async pump(): Promise<void> {
    this.pumping = true;
    try {
      while (!this.closed) {
        const parsed = parseFrame(this.inbuf);
        if (!parsed) break;
        this.inbuf = this.inbuf.subarray(parsed.size);
        await this.handle(parsed.frame);
      }
    } catch (err) {
      this.fail(err);
    }
    this.pumping = false;
    this.afterPump();
  }

  private afterPump(): void {
    if (this.pumping) return;
    if (this.peerEnded && !this.peerEndHandled) {
      this.peerEndHandled = true;
      this.onPeerEnd();
    }
    if (this.socketClosed) this.onClose();
  }

  private async handle(f: Frame): Promise<void> {
    switch (f.kind) {
      case "data": {
        this.sessionUnacked += f.data.length;
        if (this.sessionUnacked >= this.receiveWindow / 2) {
          this.enqueue(encodeWindowUpdate(0, this.sessionUnacked));
          this.sessionUnacked = 0;
        }
        const s = this.streams.get(f.streamId);
        if (!s) return; // late data for a stream already reset: ignore, as spdystream does
        if (f.data.length > 0 && !s.deliver(f.data)) {
          this.blocked.add(s);
          // A strict peer is held back by our window; only a peer that ignores it needs TCP.
          if (!this.peerFlowControl && !this.pausedByUs) {
            this.pausedByUs = true;
            this.socket.pause();
          }
        } else {
          this.ackStream(s, false);
        }
        if (f.flags & FLAG_FIN) this.remoteFinished(s);
        return;
      }
      case "synStream": {
        // Always inflate, even a block we refuse: the zlib context spans the whole session.
        const headers = await this.decompressor.decompress(f.block);
        const peerParity = this.isServer ? 1 : 0;
        if (f.streamId % 2 !== peerParity || f.streamId <= this.lastPeerStreamId) {
          this.enqueue(encodeRstStream(f.streamId, RstStatus.ProtocolError));
          return;
        }
        this.lastPeerStreamId = f.streamId;
        if (this.goAwaySent || this.listenerCount("stream") === 0) {
          this.enqueue(encodeRstStream(f.streamId, RstStatus.RefusedStream));
          return;
        }
        const s = new SpdyStream(this, f.streamId, headers, this.peerInitialWindow);
        this.streams.set(f.streamId, s);
        if (f.flags & FLAG_UNIDIRECTIONAL) {
          s.localClosed = true;
          s.end();
        }
        if (f.flags & FLAG_FIN) this.remoteFinished(s);
        this.emit("stream", s);
        return;
      }
      case "synReply": {
        await this.decompressor.decompress(f.block);
        const pending = this.opening.get(f.streamId);
        const s = this.streams.get(f.streamId);
        this.opening.delete(f.streamId);
        if (s && pending) pending.resolve(s);
        if (s && f.flags & FLAG_FIN) this.remoteFinished(s);
        return;
      }
      case "headers": {
        await this.decompressor.decompress(f.block);
        const s = this.streams.get(f.streamId);
        if (s && f.flags & FLAG_FIN) this.remoteFinished(s);
        return;
      }
      case "rstStream": {
        const s = this.streams.get(f.streamId);
        if (!s) return;
        const pending = this.opening.get(f.streamId);
        this.opening.delete(f.streamId);
        pending?.reject(new Error(`SPDY stream ${f.streamId} refused (status ${f.status})`));
        this.abortStream(s);
        s.emit("reset", f.status);
        return;
      }
      case "settings":
        for (const e of f.entries) {
          if (e.id !== SETTINGS_INITIAL_WINDOW_SIZE) continue;
          const delta = e.value - this.peerInitialWindow;
          this.peerInitialWindow = e.value;
          for (const s of this.streams.values()) s.sendWindow += delta;
          this.peerFlowControl = true;
        }
        this.wakeWindowWaiters();
        return;
      case "ping":
        // Our pings carry ids of our own parity (server even, client odd); echo the peer's.
        if (f.id % 2 === (this.isServer ? 0 : 1)) this.emit("pong", f.id);
        else this.enqueue(encodePing(f.id));
        return;
      case "goAway":
        this.peerWentAway = true;
        for (const [id, p] of this.opening) {
          if (id > f.lastGoodStreamId) p.reject(new Error("SPDY session going away"));
        }
        this.emit("goaway", f.lastGoodStreamId, f.status);
        return;
      case "windowUpdate":
        this.peerFlowControl = true;
        if (f.streamId === 0) this.sessionSendWindow += f.delta;
        else {
          const s = this.streams.get(f.streamId);
          if (s) s.sendWindow += f.delta;
        }
        this.wakeWindowWaiters();
        return;
      case "unknown":
        return;
    }
  }

  private ackStream(s: SpdyStream, force: boolean): void {
    if (s.unacked === 0 || s.remoteClosed || this.closed) return;
    if (force || s.unacked >= this.receiveWindow / 2) {
      this.enqueue(encodeWindowUpdate(s.id, s.unacked));
      s.unacked = 0;
    }
  }

  private remoteFinished(s: SpdyStream): void {
    s.endRemote();
    this.forgetIfDone(s);
  }

  private forgetIfDone(s: SpdyStream): void {
    if (s.localClosed && s.remoteClosed) {
      this.streams.delete(s.id);
      this.blocked.delete(s);
    }
  }

  /** Ends a stream without further frames: readers see EOF, writes are dropped. */
  private abortStream(s: SpdyStream): void {
    s.aborted = true;
    s.localClosed = true;
    s.endRemote();
    this.streams.delete(s.id);
    this.blocked.delete(s);
    if (this.blocked.size === 0 && this.pausedByUs) {
      this.pausedByUs = false;
      this.socket.resume();
    }
    this.wakeWindowWaiters();
  }

  private waitForWindow(): Promise<void> {
    return new Promise((resolve) => this.windowWaiters.push(resolve));
  }

  private wakeWindowWaiters(): void {
    const w = this.windowWaiters;
    this.windowWaiters = [];
    for (const f of w) f();
  }

  private onPeerEnd(): void {
    // The peer hung up its side; nothing more will arrive on any stream.
    for (const s of this.streams.values()) s.endRemote();
    void this.flushed().then(() => {
      if (!this.closed && !this.socketClosed) this.socket.end();
    });
  }

  private fail(err: unknown): void {
    if (this.closed) return;
    this.emit("protocolError", err instanceof Error ? err : new SpdyProtocolError(String(err)));
    if (err instanceof SpdyProtocolError && !this.goAwaySent) {
      this.goAwaySent = true;
      this.socket.write(encodeGoAway(this.lastPeerStreamId, 1));
    }
    this.socket.destroy();
  }

  private onClose(): void {
    if (this.closed) return;
    this.closed = true;
    for (const p of this.opening.values()) p.reject(new Error("SPDY session closed"));
    this.opening.clear();
    for (const s of [...this.streams.values()]) this.abortStream(s);
    this.out.clear();
    this.wakeWindowWaiters();
    this.out.releaseWaiters();
    this.compressor.close();
    this.decompressor.close();
    this.emit("close");
  }
}
