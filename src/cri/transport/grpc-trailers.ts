// A call's status as HTTP/2 headers: grpc-status and grpc-message in the trailers (or in the
// only header block of a trailers-only response), plus any custom metadata of the status.
// h2-server-stream.ts encodes them (statusBlock).

import type { Metadata } from "@grpc/grpc-js";
import type { OutgoingHttpHeaders } from "node:http2";

/**
 * grpc-message's encoding: bytes outside printable ASCII (0x20-0x7E) and '%' itself become
 * %XX of their UTF-8 bytes; everything else is sent as is.
 */
export function encodeGrpcMessage(message: string): string {
  // Nearly every message is plain ASCII without '%': returned as is, no buffer made.
  if (/^[\x20-\x24\x26-\x7e]*$/.test(message)) return message;
  let out = "";
  for (const b of Buffer.from(message, "utf8")) {
    out +=
      b >= 0x20 && b <= 0x7e && b !== 0x25
        ? String.fromCharCode(b)
        : `%${b.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

/** The inverse, for tests and clients; a malformed %XX is kept literally (as the spec asks). */
export function decodeGrpcMessage(encoded: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < encoded.length; i++) {
    const c = encoded.charCodeAt(i);
    if (c === 0x25 && i + 2 < encoded.length && /^[0-9A-Fa-f]{2}$/.test(encoded.slice(i + 1, i + 3))) {
      bytes.push(parseInt(encoded.slice(i + 1, i + 3), 16));
      i += 2;
    } else bytes.push(c & 0xff);
  }
  return Buffer.from(bytes).toString("utf8");
}

/** Header names a status's metadata may not set (they are the transport's). */
const RESERVED = new Set(["grpc-status", "grpc-message", "grpc-status-details-bin", "content-type", "te"]);

/** grpc-status, grpc-message (when there is one) and the metadata's own entries. */
export function statusHeaders(code: number, message: string, metadata?: Metadata): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  if (metadata) {
    for (const [k, v] of Object.entries(metadata.toHttp2Headers())) {
      if (!RESERVED.has(k) && !k.startsWith(":")) out[k] = v;
    }
  }
  out["grpc-status"] = String(code);
  if (message) out["grpc-message"] = encodeGrpcMessage(message);
  return out;
}
