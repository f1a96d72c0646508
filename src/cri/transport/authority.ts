// Which :authority values Node's HTTP/2 server (nghttp2) accepts, and how to make any value
// acceptable. nghttp2 (lib/nghttp2_http.c, VALID_AUTHORITY_CHARS and check_pseudo_header) resets
// a request whose :authority holds a byte outside the set below, is empty or only spaces and
// tabs, or that has neither :authority nor a valid host header. grpc-go clients dialing a unix
// socket the way kubelet <= 1.26 and crictl 1.26 do send the socket path ("/run/berth/berth.sock"),
// and "/" is not in the set.

const ALLOWED = new Uint8Array(256);
for (const c of "!$%&'()*+,-.0123456789:;=@ABCDEFGHIJKLMNOPQRSTUVWXYZ[]_abcdefghijklmnopqrstuvwxyz~") {
  ALLOWED[c.charCodeAt(0)] = 1;
}

/** What berth puts in a request that carries no usable authority at all. */
export const FALLBACK_AUTHORITY = "localhost";

/** Whether nghttp2 accepts `value` (latin1, one char per octet) as :authority or host. */
export function authorityAcceptable(value: string): boolean {
  // Space and tab are not in the set, so a non-empty value of allowed octets is never "only
  // whitespace" either.
  if (value.length === 0) return false;
  for (let i = 0; i < value.length; i++) if (!ALLOWED[value.charCodeAt(i)]) return false;
  return true;
}

/**
 * An acceptable :authority for `value`: the refused octets percent-encoded ("/run/x.sock" ->
 * "%2Frun%2Fx.sock", what newer grpc-go clients send themselves), so the value is kept; an empty
 * value becomes FALLBACK_AUTHORITY.
 */
export function makeAuthorityAcceptable(value: string): string {
  if (value.length === 0) return FALLBACK_AUTHORITY;
  let out = "";
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    out += ALLOWED[c] ? value[i] : `%${c.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

export interface AuthorityField {
  name: string;
  value: string;
  kind: "indexed" | "incremental" | "without" | "never";
}

/**
 * The request header list with its authority made acceptable, or undefined when nghttp2 accepts
 * it as it is. A missing authority (and no valid host) gets `:authority: localhost` in front, where
 * pseudo-header fields belong.
 */
export function fixRequestAuthority<F extends AuthorityField>(
  fields: readonly F[],
): (F | AuthorityField)[] | undefined {
  let changed = false;
  let authority = false;
  let validHost = false;
  const out: (F | AuthorityField)[] = fields.map((f) => {
    if (f.name === "host" && authorityAcceptable(f.value)) validHost = true;
    if (f.name !== ":authority") return f;
    authority = true;
    if (authorityAcceptable(f.value)) return f;
    changed = true;
    return { ...f, value: makeAuthorityAcceptable(f.value) };
  });
  if (!authority && !validHost) {
    out.unshift({ name: ":authority", value: FALLBACK_AUTHORITY, kind: "without" });
    changed = true;
  }
  return changed ? out : undefined;
}
