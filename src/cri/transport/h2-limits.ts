// What berth's HTTP/2 server connection (h2-connection.ts) announces and enforces, and the error
// that ends a connection. The windows are large so a 16 MiB request (kubelet's limit) flows
// without waiting on WINDOW_UPDATE round trips, yet memory stays bounded: the connection
// window is credited only as request bytes are consumed, so what a connection holds unread
// (a paused client stream) never exceeds it.

export const RECV = {
  /** SETTINGS_INITIAL_WINDOW_SIZE we announce: each stream's receive window. */
  streamWindow: 4 << 20,
  /** The connection's receive window (raised from 65535 by our first WINDOW_UPDATE). */
  connectionWindow: 16 << 20,
  /** SETTINGS_MAX_CONCURRENT_STREAMS: kubelet runs a few dozen calls at once at most. */
  maxConcurrentStreams: 1000,
  /** SETTINGS_MAX_HEADER_LIST_SIZE (decoded size, RFC 7541 4.1); more is a COMPRESSION_ERROR. */
  maxHeaderListSize: 1 << 20,
  /** An encoded header block (HEADERS + CONTINUATIONs) larger than this: ENHANCE_YOUR_CALM. */
  maxHeaderBlock: (1 << 20) + (64 << 10),
  /** Response bytes one flush hands the socket before waiting for its 'drain'. */
  maxWriteBatch: 1 << 20,
  /** Bytes the socket may hold unsent before the peer counts as not reading: disconnected. */
  maxWriteBacklog: 64 << 20,
} as const;

/** A connection error (RFC 9113 5.4.1): GOAWAY with `code`, then the connection closes. */
export class H2Error extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}
