// A request's decoded header fields as the headers object a call reads (node:http2's shape: a
// repeated field becomes an array), or null when the request is malformed (RFC 9113 8.2, 8.3:
// the stream is reset with PROTOCOL_ERROR): names with uppercase, control or non-ASCII
// characters, unknown or repeated pseudo-headers, a pseudo-header after a regular field,
// connection-specific fields, TE other than "trailers", or :method / :scheme / :path missing.

import type { RequestHeaders } from "./call-stream.js";
import type { HeaderField } from "./hpack.js";

const PSEUDO = new Set([":method", ":scheme", ":path", ":authority"]);
const CONNECTION_SPECIFIC = new Set(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"]);

/** RFC 9113 8.2.1: a field name has no 0x00-0x20, no uppercase 0x41-0x5a and no 0x7f-0xff. */
function badName(name: string): boolean {
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c <= 0x20 || (c >= 0x41 && c <= 0x5a) || c >= 0x7f) return true;
  }
  return false;
}

// Index loops, no destructuring and no lowercased copy of each name: this runs for every call,
// first while berthd's code is still interpreted (hpack.ts Cursor says why that matters).
export function readRequestHeaders(fields: readonly HeaderField[]): RequestHeaders | null {
  // No prototype: a field named "__proto__" is just a field.
  const out: RequestHeaders = Object.create(null) as RequestHeaders;
  let regularSeen = false;
  for (let i = 0; i < fields.length; i++) {
    const f = fields[i]!;
    const name = f.name;
    const value = f.value;
    if (name.length === 0 || badName(name)) return null;
    if (name.charCodeAt(0) === 0x3a) {
      if (regularSeen || !PSEUDO.has(name) || out[name] !== undefined) return null;
      out[name] = value;
      continue;
    }
    regularSeen = true;
    if (CONNECTION_SPECIFIC.has(name)) return null;
    if (name === "te" && value !== "trailers") return null;
    const had = out[name];
    if (had === undefined) out[name] = value;
    else if (Array.isArray(had)) had.push(value);
    else out[name] = [had, value];
  }
  if (!out[":method"] || !out[":scheme"] || !out[":path"]) return null;
  return out;
}
