// NRI's connection multiplexer (containerd/nri pkg/net/multiplex), runtime side. One unix
// socket to a plugin (the trunk) carries several logical byte streams: each write on a logical
// connection goes out as one frame, a 4-byte big-endian connection id, a 4-byte big-endian
// payload length, then the payload. NRI uses connection 1 for the Plugin service (the plugin
// serves it, the runtime calls it) and 2 for the Runtime service (the other way round), each a
// plain ttrpc byte stream. There is no open or close message: a connection exists as soon as
// one side writes on it, and everything ends when the trunk closes.
import { Duplex } from "node:stream";

import { InvalidArgumentError, UnavailableError } from "../util/errors.js";

/** The logical connection the plugin serves NRI's Plugin service on. */
export const PLUGIN_SERVICE_CONN = 1;
/** The logical connection the runtime serves NRI's Runtime service on. */
export const RUNTIME_SERVICE_CONN = 2;

const HEADER_LENGTH = 8;
/**
 * The largest payload one frame carries: a whole ttrpc message (its 10-byte header and up to
 * 4 MiB of body). Go's reader hands each frame to a single Read, so bigger writes are split.
 */
export const MAX_FRAME_PAYLOAD = 10 + (4 << 20);

/** Encodes one frame (header and payload) of logical connection `id`. */
export function encodeMuxFrame(id: number, payload: Uint8Array): Buffer {
  if (payload.length > MAX_FRAME_PAYLOAD)
    throw new InvalidArgumentError(
      `nri mux: a frame carries at most ${MAX_FRAME_PAYLOAD} bytes, not ${payload.length}`,
    );
  const header = Buffer.alloc(HEADER_LENGTH);
  header.writeUInt32BE(id, 0);
  header.writeUInt32BE(payload.length, 4);
  return Buffer.concat([header, payload]);
}

/**
 * Splits the trunk's byte stream into frames, whatever the chunking of the reads. A frame
 * longer than MAX_FRAME_PAYLOAD is a protocol error (no conforming peer sends one, and
 * accepting it would let a plugin make berthd buffer gigabytes).
 */
export class MuxFrameParser {
  private buffered: Buffer[] = [];
  private size = 0;
  private failed = false;

  constructor(
    private readonly onFrame: (id: number, payload: Buffer) => void,
    private readonly onError: (err: Error) => void,
  ) {}

  push(chunk: Buffer): void {
    if (this.failed) return;
    this.buffered.push(chunk);
    this.size += chunk.length;
    while (this.size >= HEADER_LENGTH) {
      const head = this.peek(HEADER_LENGTH);
      const id = head.readUInt32BE(0);
      const length = head.readUInt32BE(4);
      if (length > MAX_FRAME_PAYLOAD) {
        this.failed = true;
        this.buffered = [];
        this.onError(
          new InvalidArgumentError(
            `nri mux: frame of ${length} bytes on connection ${id} is over ${MAX_FRAME_PAYLOAD}`,
          ),
        );
        return;
      }
      if (this.size < HEADER_LENGTH + length) return;
      const all = this.take(HEADER_LENGTH + length);
      this.onFrame(id, all.subarray(HEADER_LENGTH));
    }
  }

  private peek(n: number): Buffer {
    if (this.buffered[0]!.length < n) this.buffered = [Buffer.concat(this.buffered)];
    return this.buffered[0]!.subarray(0, n);
  }

  private take(n: number): Buffer {
    const all = this.buffered.length === 1 ? this.buffered[0]! : Buffer.concat(this.buffered);
    this.buffered = all.length > n ? [all.subarray(n)] : [];
    this.size -= n;
    return all.subarray(0, n);
  }
}

/** One logical connection: a duplex byte stream, the transport of one ttrpc client or server. */
export class MuxChannel extends Duplex {
  constructor(
    readonly id: number,
    private readonly mux: Multiplexer,
  ) {
    super({ allowHalfOpen: false });
  }

  override _read(): void {
    // Frames are pushed as they arrive; the trunk is a unix socket to one local plugin, whose
    // ttrpc traffic is request/response sized, so no read-side flow control is kept.
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    try {
      this.mux.send(this.id, chunk);
      cb();
    } catch (err) {
      cb(err as Error);
    }
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.mux.forget(this);
    cb(err);
  }

  // ttrpc calls these on sockets when present; a logical connection has nothing to tune.
  setNoDelay(): this {
    return this;
  }
}

/** The trunk as the multiplexer needs it: a net.Socket, or another duplex stream in tests. */
export type MuxTrunk = Duplex;

/** Splits one trunk into logical connections (containerd/nri's multiplex.Mux). */
export class Multiplexer {
  private readonly channels = new Map<number, MuxChannel>();
  private readonly parser: MuxFrameParser;
  private closedWith: Error | undefined;

  constructor(private readonly trunk: MuxTrunk) {
    this.parser = new MuxFrameParser(
      (id, payload) => this.channels.get(id)?.push(Buffer.from(payload)),
      (err) => this.close(err),
    );
    trunk.on("data", (chunk: Buffer) => this.parser.push(chunk));
    trunk.on("error", (err) =>
      this.close(new UnavailableError(`nri mux: trunk error: ${err.message}`, { cause: err })),
    );
    trunk.on("close", () => this.close(new UnavailableError("nri mux: connection closed")));
  }

  /** The logical connection `id`; frames for a connection nobody opened are dropped, as in Go. */
  open(id: number): MuxChannel {
    if (id === 0) throw new InvalidArgumentError("nri mux: connection id 0 is reserved");
    if (this.closedWith) throw this.closedWith;
    let ch = this.channels.get(id);
    if (!ch) {
      ch = new MuxChannel(id, this);
      this.channels.set(id, ch);
    }
    return ch;
  }

  /** Closes the trunk and every logical connection on it (idempotent). */
  close(reason?: Error): void {
    if (this.closedWith) return;
    this.closedWith = reason ?? new UnavailableError("nri mux: closed");
    const chans = [...this.channels.values()];
    this.channels.clear();
    for (const ch of chans) {
      ch.push(null);
      ch.destroy();
    }
    this.trunk.destroy();
  }

  get closed(): boolean {
    return this.closedWith !== undefined;
  }

  /** @internal Writes `data` of connection `id`, split into frames no larger than Go reads. */
  send(id: number, data: Buffer): void {
    if (this.closedWith) throw this.closedWith;
    let off = 0;
    do {
      const part = data.subarray(off, off + MAX_FRAME_PAYLOAD);
      this.trunk.write(encodeMuxFrame(id, part));
      off += part.length;
    } while (off < data.length);
  }

  /** @internal A logical connection was destroyed locally: drop its frames from now on. */
  forget(ch: MuxChannel): void {
    if (this.channels.get(ch.id) === ch) this.channels.delete(ch.id);
  }
}
