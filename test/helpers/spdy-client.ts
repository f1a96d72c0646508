// A SPDY/3.1 client for the streaming tests, behaving like client-go: the upgrade request of
// apimachinery's SpdyRoundTripper (Connection: Upgrade, Upgrade: SPDY/3.1, one
// X-Stream-Protocol-Version per offered protocol), the stream order of tools/remotecommand
// (error, stdin, stdout, stderr, then resize for a tty from v3) and the port-forward streams of
// tools/portforward (error then data, with port and requestID headers). Unlike spdystream it is a
// strict SPDY/3.1 peer (it announces and enforces flow-control windows), so the server's window
// handling is exercised; test/go/go-spdy-client covers the spdystream behaviour.
import http from "node:http";
import https from "node:https";
import type { Duplex, Readable } from "node:stream";
import { SpdyConnection, type SpdyStream } from "../../src/streaming/spdy/connection.js";

export interface UpgradeResult {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  conn?: SpdyConnection;
  protocol?: string;
  socket?: Duplex;
}

/** Sends the upgrade request; on 101 returns the SPDY session. */
export function spdyUpgrade(url: string, protocols: string[], method: "GET" | "POST" = "POST"): Promise<UpgradeResult> {
  const u = new URL(url);
  const mod = u.protocol === "https:" ? https : http;
  return new Promise((resolve, reject) => {
    const req = mod.request(u, {
      method,
      headers: { Connection: "Upgrade", Upgrade: "SPDY/3.1", "X-Stream-Protocol-Version": protocols },
      rejectUnauthorized: false,
    });
    req.on("upgrade", (res, socket, head) => {
      const conn = new SpdyConnection(
        socket,
        { server: false, enforcePeerWindows: true, announceSettings: true },
        head,
      );
      const p = res.headers["x-stream-protocol-version"];
      resolve({
        status: res.statusCode ?? 0,
        headers: res.headers,
        body: "",
        conn,
        protocol: Array.isArray(p) ? p[0] : p,
        socket,
      });
    });
    req.on("response", (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }),
      );
    });
    req.on("error", reject);
    req.end();
  });
}

/** Everything a readable yields until it ends (or is torn down). */
export function collect(r: Readable | undefined): Promise<Buffer> {
  if (!r) return Promise.resolve(Buffer.alloc(0));
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    r.on("data", (c: Buffer) => chunks.push(c));
    const done = () => resolve(Buffer.concat(chunks));
    r.once("end", done);
    r.once("close", done);
  });
}

export interface CommandOptions {
  stdin?: boolean;
  stdout?: boolean;
  stderr?: boolean;
  tty?: boolean;
}

/** One exec/attach session, streams created as client-go's streamProtocolV2..V4 do. */
export class SpdyCommandSession {
  private constructor(
    readonly conn: SpdyConnection,
    readonly protocol: string,
    readonly error: SpdyStream,
    readonly stdin: SpdyStream | undefined,
    readonly stdout: SpdyStream | undefined,
    readonly stderr: SpdyStream | undefined,
    readonly resize: SpdyStream | undefined,
  ) {}

  static async open(url: string, protocols: string[], opts: CommandOptions): Promise<SpdyCommandSession> {
    const up = await spdyUpgrade(url, protocols);
    if (!up.conn) throw new Error(`upgrade failed: ${up.status} ${up.body}`);
    const conn = up.conn;
    const protocol = up.protocol ?? "";
    const open = (type: string) => conn.createStream({ streamtype: type });
    const error = await open("error");
    const stdin = opts.stdin ? await open("stdin") : undefined;
    const stdout = opts.stdout ? await open("stdout") : undefined;
    const stderr = opts.stderr && !opts.tty ? await open("stderr") : undefined;
    const v3plus = protocol.startsWith("v3.") || protocol.startsWith("v4.") || protocol.startsWith("v5.");
    const resize = opts.tty && v3plus ? await open("resize") : undefined;
    // client-go never sends on these; closing our half mirrors its stream lifecycle.
    error.end();
    stdout?.end();
    stderr?.end();
    return new SpdyCommandSession(conn, protocol, error, stdin, stdout, stderr, resize);
  }

  sendResize(width: number, height: number): void {
    // client-go's TerminalSize has no JSON tags: Go encodes the field names as declared.
    this.resize?.write(JSON.stringify({ Width: width, Height: height }) + "\n");
  }

  /** Waits for stdout, stderr and the error stream to end, as client-go's stream() does. */
  async result(): Promise<{ stdout: Buffer; stderr: Buffer; error: Buffer }> {
    const [stdout, stderr, error] = await Promise.all([
      collect(this.stdout),
      collect(this.stderr),
      collect(this.error),
    ]);
    return { stdout, stderr, error };
  }

  close(): Promise<void> {
    return this.conn.close();
  }
}

/** Parses a v4 error-stream Status into the exit code client-go's errorDecoderV4 would report. */
export function exitCodeOf(errorStream: Buffer): number {
  if (errorStream.length === 0) throw new Error("no Status on the error stream");
  const status = JSON.parse(errorStream.toString()) as {
    status: string;
    reason?: string;
    details?: { causes?: { reason?: string; message?: string }[] };
  };
  if (status.status === "Success") return 0;
  if (status.reason !== "NonZeroExitCode") throw new Error(`remote command failed: ${errorStream.toString()}`);
  const cause = status.details?.causes?.find((c) => c.reason === "ExitCode");
  if (!cause?.message) throw new Error("no ExitCode cause");
  return Number(cause.message);
}

/**
 * One forwarded connection over a port-forward session (client-go tools/portforward): error
 * stream first, whose write half is closed at once, then the data stream.
 */
export async function forwardOnce(
  conn: SpdyConnection,
  port: number,
  requestId: string,
  payload: Buffer,
): Promise<{ data: Buffer; error: Buffer }> {
  const headers = { streamtype: "error", port: String(port), requestid: requestId };
  const error = await conn.createStream(headers);
  error.end();
  const data = await conn.createStream({ ...headers, streamtype: "data" });
  const out = collect(data);
  const err = collect(error);
  data.write(payload);
  return { data: await out, error: await err };
}
