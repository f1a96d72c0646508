// A minimal HTTP/2 gRPC client written frame by frame, for sending what Node's own client would
// not: any :authority (the socket path as kubelet 1.26 sends it) or none at all. It encodes
// requests the way grpc-go's HPACK encoder does (a field is a literal added to the dynamic table
// the first time, an index into it afterwards) and decodes the server's answers with berth's
// HPACK decoder.
//
//   const c = await RawGrpcClient.connect(socket);
//   const r = await c.unary("/runtime.v1.RuntimeService/Version", body, { authority: socket });
//   c.close();

import { connect, type Socket } from "node:net";
import {
  CLIENT_PREFACE,
  Flag,
  frame,
  FrameType,
  headerBlockFrames,
  readFrameHeader,
} from "../../src/cri/transport/h2-frames.js";
import { huffmanEncode } from "../../src/cri/transport/hpack-huffman.js";
import { HpackDecoder, STATIC_TABLE, entrySize, writeInteger } from "../../src/cri/transport/hpack.js";

export interface UnaryResult {
  /** Response header fields, then trailer fields. */
  headers: [string, string][];
  trailers: [string, string][];
  /** The gRPC message (without its 5-byte prefix), if one came. */
  message: Buffer | undefined;
  grpcStatus: number | undefined;
  /** Set when the server reset the stream instead (an HTTP/2 error code). */
  rstCode?: number;
}

interface Pending {
  fields: [string, string][][];
  data: Buffer[];
  resolve: (r: UnaryResult) => void;
  reject: (e: Error) => void;
}

/** grpc-go's encoding: literal with incremental indexing once, then indexed. No evictions expected. */
class IndexingEncoder {
  private inserted: string[] = []; // oldest first
  private size = 0;

  encode(fields: [string, string][]): Buffer {
    const out: number[] = [];
    for (const [name, value] of fields) {
      const staticExact = STATIC_TABLE.findIndex(([n, v]) => n === name && v === value);
      if (staticExact >= 0) {
        writeInteger(out, 0x80, 7, staticExact + 1);
        continue;
      }
      const at = this.inserted.lastIndexOf(`${name}\0${value}`);
      if (at >= 0) {
        writeInteger(out, 0x80, 7, STATIC_TABLE.length + this.inserted.length - at);
        continue;
      }
      const nameIndex = STATIC_TABLE.findIndex(([n]) => n === name);
      writeInteger(out, 0x40, 6, nameIndex + 1);
      if (nameIndex < 0) this.str(out, name);
      this.str(out, value);
      this.inserted.push(`${name}\0${value}`);
      this.size += entrySize(name, value);
      if (this.size > 4096) throw new Error("IndexingEncoder: the test would need evictions");
    }
    return Buffer.from(out);
  }

  private str(out: number[], s: string): void {
    const h = huffmanEncode(s);
    writeInteger(out, 0x80, 7, h.length);
    out.push(...h);
  }
}

export class RawGrpcClient {
  private buf: Buffer = Buffer.alloc(0);
  private readonly decoder = new HpackDecoder();
  private readonly encoder = new IndexingEncoder();
  private readonly pending = new Map<number, Pending>();
  private nextStream = 1;
  private block: { stream: number; frags: Buffer[]; endStream: boolean } | undefined;
  /** Resolves when the server closes the connection. */
  readonly closed: Promise<void>;

  private constructor(private readonly socket: Socket) {
    this.closed = new Promise((resolve) => socket.once("close", () => resolve()));
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("error", () => {});
    socket.once("close", () => {
      for (const p of this.pending.values()) p.reject(new Error("connection closed"));
      this.pending.clear();
    });
  }

  static connect(path: string): Promise<RawGrpcClient> {
    return new Promise((resolve, reject) => {
      const socket = connect(path);
      socket.once("error", reject);
      socket.once("connect", () => {
        socket.off("error", reject);
        socket.write(Buffer.concat([CLIENT_PREFACE, frame(FrameType.SETTINGS, 0, 0)]));
        resolve(new RawGrpcClient(socket));
      });
    });
  }

  /** Sends raw bytes (for garbage tests). */
  write(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  /**
   * One unary call. `authority` undefined sends no :authority at all. The request body is sent
   * in DATA frames of at most 16384 bytes.
   */
  unary(path: string, body: Uint8Array, opts: { authority?: string } = {}): Promise<UnaryResult> {
    const stream = this.nextStream;
    this.nextStream += 2;
    const fields: [string, string][] = [
      [":method", "POST"],
      [":scheme", "http"],
      [":path", path],
      ...(opts.authority === undefined ? [] : [[":authority", opts.authority] as [string, string]]),
      ["content-type", "application/grpc"],
      ["user-agent", "berth-raw-h2/1"],
      ["te", "trailers"],
    ];
    const message = Buffer.concat([Buffer.from([0, 0, 0, 0, 0]), body]);
    message.writeUInt32BE(body.length, 1);
    const frames = headerBlockFrames(stream, this.encoder.encode(fields));
    for (let at = 0; at < message.length || at === 0; at += 16384) {
      const end = Math.min(at + 16384, message.length);
      frames.push(
        frame(FrameType.DATA, end === message.length ? Flag.END_STREAM : 0, stream, message.subarray(at, end)),
      );
    }
    return new Promise((resolve, reject) => {
      this.pending.set(stream, { fields: [], data: [], resolve, reject });
      this.socket.write(Buffer.concat(frames));
    });
  }

  close(): void {
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    while (this.buf.length >= 9) {
      const h = readFrameHeader(this.buf);
      if (this.buf.length < 9 + h.length) return;
      const payload = this.buf.subarray(9, 9 + h.length);
      this.buf = this.buf.subarray(9 + h.length);
      this.onFrame(h.type, h.flags, h.streamId, payload);
    }
  }

  private onFrame(type: number, flags: number, stream: number, payload: Buffer): void {
    const p = this.pending.get(stream);
    switch (type) {
      case FrameType.SETTINGS:
        if (!(flags & Flag.ACK)) this.socket.write(frame(FrameType.SETTINGS, Flag.ACK, 0));
        return;
      case FrameType.PING:
        if (!(flags & Flag.ACK)) this.socket.write(frame(FrameType.PING, Flag.ACK, 0, payload));
        return;
      case FrameType.HEADERS: {
        let at = 0;
        let pad = 0;
        if (flags & Flag.PADDED) pad = payload[at++];
        if (flags & Flag.PRIORITY) at += 5;
        this.block = {
          stream,
          frags: [payload.subarray(at, payload.length - pad)],
          endStream: !!(flags & Flag.END_STREAM),
        };
        break;
      }
      case FrameType.CONTINUATION:
        this.block!.frags.push(payload);
        break;
      case FrameType.DATA:
        if (p) p.data.push(Buffer.from(payload));
        // Give the window back so long answers keep flowing.
        if (payload.length > 0) {
          const inc = Buffer.alloc(4);
          inc.writeUInt32BE(payload.length);
          this.socket.write(
            Buffer.concat([frame(FrameType.WINDOW_UPDATE, 0, 0, inc), frame(FrameType.WINDOW_UPDATE, 0, stream, inc)]),
          );
        }
        if (flags & Flag.END_STREAM) this.finish(stream);
        return;
      case FrameType.RST_STREAM:
        if (p) {
          this.pending.delete(stream);
          p.resolve({
            headers: [],
            trailers: [],
            message: undefined,
            grpcStatus: undefined,
            rstCode: payload.readUInt32BE(0),
          });
        }
        return;
      default:
        return;
    }
    if ((type === FrameType.HEADERS || type === FrameType.CONTINUATION) && flags & Flag.END_HEADERS) {
      const b = this.block!;
      this.block = undefined;
      const fields = this.decoder
        .decode(Buffer.concat(b.frags))
        .fields.map((f) => [f.name, f.value] as [string, string]);
      this.pending.get(b.stream)?.fields.push(fields);
      if (b.endStream) this.finish(b.stream);
    }
  }

  private finish(stream: number): void {
    const p = this.pending.get(stream);
    if (!p) return;
    this.pending.delete(stream);
    const data = Buffer.concat(p.data);
    const headers = p.fields[0] ?? [];
    const trailers = p.fields.length > 1 ? p.fields[p.fields.length - 1] : headers; // trailers-only answer
    const status = trailers.find(([n]) => n === "grpc-status")?.[1];
    p.resolve({
      headers,
      trailers,
      message: data.length >= 5 ? data.subarray(5, 5 + data.readUInt32BE(1)) : undefined,
      grpcStatus: status === undefined ? undefined : Number(status),
    });
  }
}
