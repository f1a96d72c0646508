// SPDY/3.1 frame layout (SPDY Protocol draft 3.1, section 2.2; the framer in moby/spdystream,
// which kubelet and client-go use, reads and writes the same bytes).
//
// Control frame: |1|version(15)=3|type(16)|flags(8)|length(24)|data
// Data frame:    |0|stream-id(31)|flags(8)|length(24)|data
// Header blocks inside SYN_STREAM / SYN_REPLY / HEADERS stay compressed here; the connection
// runs them through its shared zlib context (header-codec.ts).

export const SPDY_VERSION = 3;
/** The largest length a frame can state (24 bits). */
export const MAX_FRAME_LENGTH = 0xffffff;

export const FrameType = {
  SynStream: 1,
  SynReply: 2,
  RstStream: 3,
  Settings: 4,
  Ping: 6,
  GoAway: 7,
  Headers: 8,
  WindowUpdate: 9,
} as const;

export const FLAG_FIN = 0x01;
export const FLAG_UNIDIRECTIONAL = 0x02;

export const RstStatus = {
  ProtocolError: 1,
  InvalidStream: 2,
  RefusedStream: 3,
  UnsupportedVersion: 4,
  Cancel: 5,
  InternalError: 6,
  FlowControlError: 7,
  StreamInUse: 8,
  StreamAlreadyClosed: 9,
  FrameTooLarge: 11,
} as const;

export const SETTINGS_INITIAL_WINDOW_SIZE = 7;
/** SPDY/3.1 default window for each stream and for the session. */
export const DEFAULT_WINDOW = 64 * 1024;

export type Frame =
  | { kind: "data"; streamId: number; flags: number; data: Buffer }
  | { kind: "synStream"; flags: number; streamId: number; associatedId: number; priority: number; block: Buffer }
  | { kind: "synReply"; flags: number; streamId: number; block: Buffer }
  | { kind: "headers"; flags: number; streamId: number; block: Buffer }
  | { kind: "rstStream"; streamId: number; status: number }
  | { kind: "settings"; flags: number; entries: { flags: number; id: number; value: number }[] }
  | { kind: "ping"; id: number }
  | { kind: "goAway"; lastGoodStreamId: number; status: number }
  | { kind: "windowUpdate"; streamId: number; delta: number }
  | { kind: "unknown"; type: number };

export class SpdyProtocolError extends Error {}

/**
 * Reads one frame from the front of `buf`. Returns undefined when the frame is not complete yet,
 * otherwise the frame and the number of bytes it took.
 */
export function parseFrame(buf: Buffer, maxLength = MAX_FRAME_LENGTH): { frame: Frame; size: number } | undefined {
  if (buf.length < 8) return undefined;
  const first = buf.readUInt32BE(0);
  const flags = buf[4];
  const length = buf.readUIntBE(5, 3);
  if (length > maxLength) throw new SpdyProtocolError(`SPDY frame of ${length} bytes exceeds the limit`);
  if (buf.length < 8 + length) return undefined;
  const body = buf.subarray(8, 8 + length);
  const size = 8 + length;
  if ((first & 0x80000000) === 0) {
    const streamId = first & 0x7fffffff;
    if (streamId === 0) throw new SpdyProtocolError("SPDY data frame on stream 0");
    return { frame: { kind: "data", streamId, flags, data: body }, size };
  }
  const version = (first >>> 16) & 0x7fff;
  if (version !== SPDY_VERSION) throw new SpdyProtocolError(`unsupported SPDY version ${version}`);
  const type = first & 0xffff;
  const need = (n: number) => {
    if (length < n) throw new SpdyProtocolError(`SPDY control frame type ${type} too short`);
  };
  switch (type) {
    case FrameType.SynStream:
      need(10);
      return {
        frame: {
          kind: "synStream",
          flags,
          streamId: body.readUInt32BE(0) & 0x7fffffff,
          associatedId: body.readUInt32BE(4) & 0x7fffffff,
          priority: body[8] >> 5,
          block: body.subarray(10),
        },
        size,
      };
    case FrameType.SynReply:
      need(4);
      return {
        frame: { kind: "synReply", flags, streamId: body.readUInt32BE(0) & 0x7fffffff, block: body.subarray(4) },
        size,
      };
    case FrameType.Headers:
      need(4);
      return {
        frame: { kind: "headers", flags, streamId: body.readUInt32BE(0) & 0x7fffffff, block: body.subarray(4) },
        size,
      };
    case FrameType.RstStream:
      need(8);
      return {
        frame: { kind: "rstStream", streamId: body.readUInt32BE(0) & 0x7fffffff, status: body.readUInt32BE(4) },
        size,
      };
    case FrameType.Settings: {
      need(4);
      const n = body.readUInt32BE(0);
      need(4 + n * 8);
      const entries = [];
      for (let i = 0; i < n; i++) {
        const off = 4 + i * 8;
        entries.push({ flags: body[off], id: body.readUIntBE(off + 1, 3), value: body.readUInt32BE(off + 4) });
      }
      return { frame: { kind: "settings", flags, entries }, size };
    }
    case FrameType.Ping:
      need(4);
      return { frame: { kind: "ping", id: body.readUInt32BE(0) }, size };
    case FrameType.GoAway:
      need(4);
      return {
        frame: {
          kind: "goAway",
          lastGoodStreamId: body.readUInt32BE(0) & 0x7fffffff,
          status: length >= 8 ? body.readUInt32BE(4) : 0,
        },
        size,
      };
    case FrameType.WindowUpdate:
      need(8);
      return {
        frame: {
          kind: "windowUpdate",
          streamId: body.readUInt32BE(0) & 0x7fffffff,
          delta: body.readUInt32BE(4) & 0x7fffffff,
        },
        size,
      };
    default:
      // SPDY says unknown control frames are ignored.
      return { frame: { kind: "unknown", type }, size };
  }
}

function control(type: number, flags: number, body: Buffer): Buffer {
  if (body.length > MAX_FRAME_LENGTH) throw new SpdyProtocolError("SPDY control frame too large");
  const h = Buffer.alloc(8);
  h.writeUInt16BE(0x8000 | SPDY_VERSION, 0);
  h.writeUInt16BE(type, 2);
  h[4] = flags;
  h.writeUIntBE(body.length, 5, 3);
  return Buffer.concat([h, body]);
}

export function encodeData(streamId: number, data: Buffer, fin: boolean): Buffer {
  if (data.length > MAX_FRAME_LENGTH) throw new SpdyProtocolError("SPDY data frame too large");
  const h = Buffer.alloc(8);
  h.writeUInt32BE(streamId & 0x7fffffff, 0);
  h[4] = fin ? FLAG_FIN : 0;
  h.writeUIntBE(data.length, 5, 3);
  return data.length === 0 ? h : Buffer.concat([h, data]);
}

export function encodeSynStream(streamId: number, flags: number, priority: number, block: Buffer): Buffer {
  const b = Buffer.alloc(10);
  b.writeUInt32BE(streamId, 0);
  b.writeUInt32BE(0, 4);
  b[8] = (priority & 7) << 5;
  b[9] = 0;
  return control(FrameType.SynStream, flags, Buffer.concat([b, block]));
}

export function encodeSynReply(streamId: number, flags: number, block: Buffer): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(streamId, 0);
  return control(FrameType.SynReply, flags, Buffer.concat([b, block]));
}

export function encodeRstStream(streamId: number, status: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32BE(streamId, 0);
  b.writeUInt32BE(status, 4);
  return control(FrameType.RstStream, 0, b);
}

export function encodeSettings(entries: { flags?: number; id: number; value: number }[]): Buffer {
  const b = Buffer.alloc(4 + entries.length * 8);
  b.writeUInt32BE(entries.length, 0);
  entries.forEach((e, i) => {
    b[4 + i * 8] = e.flags ?? 0;
    b.writeUIntBE(e.id, 5 + i * 8, 3);
    b.writeUInt32BE(e.value, 8 + i * 8);
  });
  return control(FrameType.Settings, 0, b);
}

export function encodePing(id: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(id, 0);
  return control(FrameType.Ping, 0, b);
}

export function encodeGoAway(lastGoodStreamId: number, status: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32BE(lastGoodStreamId, 0);
  b.writeUInt32BE(status, 4);
  return control(FrameType.GoAway, 0, b);
}

export function encodeWindowUpdate(streamId: number, delta: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32BE(streamId, 0);
  b.writeUInt32BE(delta, 4);
  return control(FrameType.WindowUpdate, 0, b);
}
