// The grpc-timeout request header (gRPC over HTTP/2): at most 8 ASCII digits and a unit,
// H M S m u n (hours .. nanoseconds). The call's deadline is that long after its headers came.

const UNIT_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 1e-3, n: 1e-6 };

/**
 * The timeout in milliseconds (fractions kept), or undefined when the header is absent.
 * A malformed value throws: the spec leaves it to the server, and grpc-go and grpc-js both
 * refuse the call rather than run it without the deadline the client meant.
 */
export function parseGrpcTimeout(value: string | string[] | undefined): number | undefined {
  if (value === undefined) return undefined;
  const v = Array.isArray(value) ? value[0]! : value;
  // By hand, not a RegExp: every call of kubelet's carries one, and this is on each call's path.
  const n = v.length - 1;
  const unit = n >= 1 && n <= 8 ? UNIT_MS[v.charAt(n)] : undefined;
  let amount = 0;
  for (let i = 0; unit !== undefined && i < n; i++) {
    const d = v.charCodeAt(i) - 48;
    if (d < 0 || d > 9) {
      amount = -1;
      break;
    }
    amount = amount * 10 + d;
  }
  if (unit === undefined || amount < 0) throw new Error(`malformed grpc-timeout ${JSON.stringify(v)}`);
  return amount * unit;
}
