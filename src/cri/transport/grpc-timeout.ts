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
  const m = /^(\d{1,8})([HMSmun])$/.exec(v);
  if (!m) throw new Error(`malformed grpc-timeout ${JSON.stringify(v)}`);
  return Number(m[1]) * UNIT_MS[m[2]!]!;
}
