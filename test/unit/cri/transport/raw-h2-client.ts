// A byte-level HTTP/2 client for tests of berth's server connection: it writes exactly the
// frames a test builds (including what real clients rarely send) and hands back every frame
// the server sends, in order, with header blocks decoded by the client's own HPACK decoder.

import { connect, type Socket } from "node:net";
import { CLIENT_PREFACE, Flag, frame, FrameType, u32 } from "../../../../src/cri/transport/h2-frames.js";
import { encodeWithoutIndexing, HpackDecoder } from "../../../../src/cri/transport/hpack.js";

export interface RawFrame {
  type: number;
  flags: number;
  id: number;
  payload: Buffer;
}

export class RawH2Client {
  readonly frames: RawFrame[] = [];
  readonly decoder = new HpackDecoder();
  private input = Buffer.alloc(0);
  private wake: (() => void) | undefined;
  ended = false;
  readonly closed: Promise<void>;

  private constructor(readonly socket: Socket) {
    socket.on("data", (chunk: Buffer) => {
      this.input = Buffer.concat([this.input, chunk]);
      while (this.input.length >= 9) {
        const length = this.input.readUIntBE(0, 3);
        if (this.input.length < 9 + length) break;
        this.frames.push({
          type: this.input[3]!,
          flags: this.input[4]!,
          id: this.input.readUInt32BE(5) & 0x7fffffff,
          payload: Buffer.from(this.input.subarray(9, 9 + length)),
        });
        this.input = this.input.subarray(9 + length);
      }
      this.wake?.();
    });
    socket.on("error", () => {});
    this.closed = new Promise((resolve) =>
      socket.once("close", () => {
        this.ended = true;
        this.wake?.();
        resolve();
      }),
    );
  }

  /** Connects; sends the preface and SETTINGS (`settings` as [id, value] pairs) unless told not to. */
  static async open(path: string, settings: [number, number][] = [], preface = true): Promise<RawH2Client> {
    const socket = connect(path);
    await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject));
    const c = new RawH2Client(socket);
    if (preface) c.socket.write(Buffer.concat([CLIENT_PREFACE, settingsFrame(settings)]));
    return c;
  }

  send(...frames: Buffer[]): void {
    this.socket.write(Buffer.concat(frames));
  }

  /** The next frame the server sent that `pred` accepts (earlier ones are skipped); null once closed. */
  async next(pred: (f: RawFrame) => boolean = () => true): Promise<RawFrame | null> {
    for (;;) {
      const i = this.frames.findIndex(pred);
      if (i >= 0) return this.frames.splice(0, i + 1)[i]!;
      if (this.ended) return null;
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  /** The GOAWAY the server ends with: its error code, once the socket closed. */
  async goawayCode(): Promise<number | undefined> {
    const g = await this.next((f) => f.type === FrameType.GOAWAY);
    await this.closed;
    return g ? g.payload.readUInt32BE(4) : undefined;
  }

  headersOf(f: RawFrame): Record<string, string> {
    const out: Record<string, string> = {};
    for (const { name, value } of this.decoder.decode(f.payload).fields) out[name] = value;
    return out;
  }

  close(): void {
    this.socket.destroy();
  }
}

export function settingsFrame(settings: [number, number][]): Buffer {
  const p = Buffer.alloc(6 * settings.length);
  settings.forEach(([id, v], i) => {
    p.writeUInt16BE(id, 6 * i);
    p.writeUInt32BE(v, 6 * i + 2);
  });
  return frame(FrameType.SETTINGS, 0, 0, p);
}

export const windowUpdate = (id: number, inc: number): Buffer => frame(FrameType.WINDOW_UPDATE, 0, id, u32(inc));

/** A gRPC request's header block for `path`. */
export function requestBlock(path: string, extra: Record<string, string> = {}): Buffer {
  const fields: Record<string, string> = {
    ":method": "POST",
    ":scheme": "http",
    ":path": path,
    ":authority": "localhost",
    "content-type": "application/grpc",
    te: "trailers",
    ...extra,
  };
  return encodeWithoutIndexing(Object.entries(fields).map(([name, value]) => ({ name, value })));
}

export const headersFrame = (id: number, block: Buffer, endStream = false): Buffer =>
  frame(FrameType.HEADERS, Flag.END_HEADERS | (endStream ? Flag.END_STREAM : 0), id, block);

export const dataFrame = (id: number, payload: Buffer, endStream = false): Buffer =>
  frame(FrameType.DATA, endStream ? Flag.END_STREAM : 0, id, payload);
