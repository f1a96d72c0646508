// The HTTP client of a pull (registry.ts, auth.ts), on node:http and node:https.
//
// It was undici's, whose module graph (fetch, WebSocket, caches, the llhttp WebAssembly
// parser) berthd loaded at its first pull and kept for good: importing undici alone adds
// 3.6 MiB of V8 heap (node --expose-gc, heapUsed after a GC, before and after the import), and
// its WebAssembly parser more once compiled. node's own client is already in the binary.
// berthd's private memory (smaps Private_*, MiB) with 20 pods after pulling busybox, node
// dist/bench/memory-idle.bench.js 10 20 40 on the same tree with and without this change, in
// turns, load 4.5-5.2: undici 31.3 and 30.9 (RSS 78.6, 78.3); node:http 28.1 and 28.1 (RSS 74.2,
// 74.3). After the 40-pod churn the runs spread too far to tell (29.7-35.5 against 32.1-32.2).
//
// What the registry client relies on, kept as undici gave it:
//   - keep-alive connections, at most 16 per origin, per TLS setting (one HttpClient each);
//     an idle one is closed after 4 s (undici's keepAliveTimeout) and never holds the process;
//   - a connection that takes 10 s to open fails (undici's connect timeout), so a dead mirror
//     gives way to the next host; 300 s without a byte fails (its headers and body timeouts);
//   - AbortSignal: aborting ends the request and its body stream;
//   - errors carry node's codes (ECONNREFUSED, ETIMEDOUT, the TLS codes): registry.ts tells
//     network and TLS failures apart by them.
import { Agent as HttpAgent, request as httpRequest, type IncomingHttpHeaders, type IncomingMessage } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";

/** TLS settings of a registry host (hosts.toml's ca, client, skip_verify). */
export interface TlsOptions {
  ca?: Buffer[];
  cert?: Buffer;
  key?: Buffer;
  rejectUnauthorized: boolean;
}

export interface RequestOptions {
  method: "GET" | "HEAD" | "POST";
  headers: Record<string, string | string[]>;
  body?: string;
  signal?: AbortSignal;
}

const CONNECTIONS_PER_ORIGIN = 16;
const IDLE_CLOSE_MS = 4_000;
const CONNECT_TIMEOUT_MS = 10_000;
const INACTIVITY_TIMEOUT_MS = 300_000;
/** What dump() reads to keep a connection for reuse; a longer body closes the connection instead. */
const DUMP_LIMIT = 128 * 1024;

/** A response: status, lower-case headers, and the body as a stream of Buffers. */
export class HttpResponse {
  constructor(readonly body: IncomingMessage) {}

  get statusCode(): number {
    return this.body.statusCode ?? 0;
  }

  get headers(): IncomingHttpHeaders {
    return this.body.headers;
  }

  /** The whole body as UTF-8 text. */
  async text(): Promise<string> {
    const chunks: Buffer[] = [];
    for await (const c of this.body) chunks.push(c as Buffer);
    return Buffer.concat(chunks).toString("utf8");
  }

  /** Reads and drops a short body (the connection is then reused); closes the connection on a long one. */
  async dump(): Promise<void> {
    let n = 0;
    try {
      for await (const c of this.body) {
        n += (c as Buffer).length;
        if (n > DUMP_LIMIT) {
          this.body.destroy();
          return;
        }
      }
    } catch {
      // a body that fails while dropped is dropped all the same
    }
  }
}

/** The client's time limits (ms); the defaults above unless a test shortens them. */
export interface HttpTimeouts {
  connectMs?: number;
  inactivityMs?: number;
}

/** Connections to registries with one TLS setting, kept alive between requests. */
export class HttpClient {
  private readonly http: HttpAgent;
  private readonly https: HttpsAgent;
  private readonly connectMs: number;
  private readonly inactivityMs: number;

  constructor(tls?: TlsOptions, timeouts: HttpTimeouts = {}) {
    this.connectMs = timeouts.connectMs ?? CONNECT_TIMEOUT_MS;
    this.inactivityMs = timeouts.inactivityMs ?? INACTIVITY_TIMEOUT_MS;
    const pool = { keepAlive: true, maxSockets: CONNECTIONS_PER_ORIGIN, timeout: IDLE_CLOSE_MS };
    this.http = new HttpAgent(pool);
    this.https = new HttpsAgent({ ...pool, ...tls });
  }

  /** Sends one request; resolves with the response once its headers are in (any status). */
  request(url: string | URL, opts: RequestOptions): Promise<HttpResponse> {
    const u = typeof url === "string" ? new URL(url) : url;
    const https = u.protocol === "https:";
    if (!https && u.protocol !== "http:") return Promise.reject(new TypeError(`not an http(s) URL: ${u.href}`));
    const headers = { ...opts.headers };
    if (opts.body !== undefined) headers["content-length"] = String(Buffer.byteLength(opts.body));
    return new Promise<HttpResponse>((resolve, reject) => {
      const req = (https ? httpsRequest : httpRequest)(u, {
        method: opts.method,
        headers,
        agent: https ? this.https : this.http,
        signal: opts.signal,
        timeout: this.inactivityMs,
      });
      req.once("response", (res) => resolve(new HttpResponse(res)));
      req.on("error", reject);
      req.on("timeout", () => req.destroy(timeoutError(`no data from ${u.host} for ${this.inactivityMs / 1000} s`)));
      req.once("socket", (socket) => {
        if (!socket.connecting) return; // a kept-alive connection
        const timer = setTimeout(
          () => req.destroy(timeoutError(`connecting to ${u.host} took over ${this.connectMs / 1000} s`)),
          this.connectMs,
        );
        const done = () => clearTimeout(timer);
        socket.once("connect", done);
        socket.once("close", done);
      });
      req.end(opts.body);
    });
  }
}

function timeoutError(message: string): Error {
  return Object.assign(new Error(message), { code: "ETIMEDOUT" });
}

let plain: HttpClient | undefined;
/** The shared client for hosts with no TLS settings (and for redirects to other hosts). */
export function defaultClient(): HttpClient {
  plain ??= new HttpClient();
  return plain;
}
