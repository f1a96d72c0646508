// The few HTTP/2 framing facts (RFC 9113 sections 3.4, 4.1, 6) the transport needs to read and
// write frames of a connection's byte stream without an HTTP/2 library.

export const CLIENT_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");
export const FRAME_HEADER_LENGTH = 9;
/** SETTINGS_MAX_FRAME_SIZE's initial value: every peer accepts frames of this size. */
export const DEFAULT_MAX_FRAME_SIZE = 16384;

export const FrameType = {
  DATA: 0x0,
  HEADERS: 0x1,
  PRIORITY: 0x2,
  RST_STREAM: 0x3,
  SETTINGS: 0x4,
  PUSH_PROMISE: 0x5,
  PING: 0x6,
  GOAWAY: 0x7,
  WINDOW_UPDATE: 0x8,
  CONTINUATION: 0x9,
} as const;

export const Flag = {
  END_STREAM: 0x1,
  ACK: 0x1,
  END_HEADERS: 0x4,
  PADDED: 0x8,
  PRIORITY: 0x20,
} as const;

/** A byte stream that is not a well-formed HTTP/2 client stream: the connection is closed. */
export class H2ProtocolError extends Error {}

export interface FrameHeader {
  length: number;
  type: number;
  flags: number;
  streamId: number;
}

export function readFrameHeader(b: Uint8Array, at = 0): FrameHeader {
  return {
    length: (b[at] << 16) | (b[at + 1] << 8) | b[at + 2],
    type: b[at + 3],
    flags: b[at + 4],
    // The top bit is reserved and ignored on receipt.
    streamId: ((b[at + 5] & 0x7f) << 24) | (b[at + 6] << 16) | (b[at + 7] << 8) | b[at + 8],
  };
}

/** One frame: header and payload in one buffer. */
export function frame(type: number, flags: number, streamId: number, payload: Uint8Array = Buffer.alloc(0)): Buffer {
  const out = Buffer.allocUnsafe(FRAME_HEADER_LENGTH + payload.length);
  out.writeUIntBE(payload.length, 0, 3);
  out[3] = type;
  out[4] = flags;
  out.writeUInt32BE(streamId & 0x7fffffff, 5);
  out.set(payload, FRAME_HEADER_LENGTH);
  return out;
}

/**
 * A header block as HEADERS plus as many CONTINUATION frames as `maxFrameSize` needs. `priority`
 * is the HEADERS frame's 5-byte priority field, if it had one.
 */
export function headerBlockFrames(
  streamId: number,
  block: Uint8Array,
  opts: { endStream?: boolean; priority?: Uint8Array; maxFrameSize?: number } = {},
): Buffer[] {
  const max = opts.maxFrameSize ?? DEFAULT_MAX_FRAME_SIZE;
  const prio = opts.priority;
  const firstRoom = max - (prio ? prio.length : 0);
  const first = block.subarray(0, firstRoom);
  let flags = opts.endStream ? Flag.END_STREAM : 0;
  if (prio) flags |= Flag.PRIORITY;
  if (block.length <= firstRoom) flags |= Flag.END_HEADERS;
  const frames = [frame(FrameType.HEADERS, flags, streamId, prio ? Buffer.concat([prio, first]) : first)];
  for (let at = firstRoom; at < block.length; at += max) {
    const end = Math.min(at + max, block.length);
    frames.push(
      frame(FrameType.CONTINUATION, end === block.length ? Flag.END_HEADERS : 0, streamId, block.subarray(at, end)),
    );
  }
  return frames;
}

/** Error codes of RST_STREAM and GOAWAY (RFC 9113 section 7). */
export const ErrorCode = {
  NO_ERROR: 0x0,
  PROTOCOL_ERROR: 0x1,
  INTERNAL_ERROR: 0x2,
  FLOW_CONTROL_ERROR: 0x3,
  SETTINGS_TIMEOUT: 0x4,
  STREAM_CLOSED: 0x5,
  FRAME_SIZE_ERROR: 0x6,
  REFUSED_STREAM: 0x7,
  CANCEL: 0x8,
  COMPRESSION_ERROR: 0x9,
  CONNECT_ERROR: 0xa,
  ENHANCE_YOUR_CALM: 0xb,
  INADEQUATE_SECURITY: 0xc,
  HTTP_1_1_REQUIRED: 0xd,
} as const;

/** SETTINGS parameter identifiers (RFC 9113 section 6.5.2). */
export const Setting = {
  HEADER_TABLE_SIZE: 0x1,
  ENABLE_PUSH: 0x2,
  MAX_CONCURRENT_STREAMS: 0x3,
  INITIAL_WINDOW_SIZE: 0x4,
  MAX_FRAME_SIZE: 0x5,
  MAX_HEADER_LIST_SIZE: 0x6,
} as const;

/** The largest flow-control window (and SETTINGS_INITIAL_WINDOW_SIZE) there can be: 2^31-1. */
export const MAX_WINDOW = 0x7fffffff;
/** Every window starts at this until SETTINGS / WINDOW_UPDATE say otherwise. */
export const DEFAULT_WINDOW = 65535;

/** A 4-byte big-endian value as a frame payload (WINDOW_UPDATE, RST_STREAM). */
export function u32(value: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(value >>> 0, 0);
  return b;
}
