// The streaming server behind CRI Exec, Attach and PortForward (kubelet
// pkg/cri/streaming/server.go). The CRI call stores its request and returns a URL with a
// single-use token; the client then upgrades a GET or POST on that URL to SPDY/3.1 or to a
// WebSocket and speaks the remotecommand or port-forward protocol over it.
//
// Every session owns an AbortController: when the client disconnects, or stop() is called, the
// backend is told to kill (exec), detach (attach) or disconnect (port forward), so nothing keeps
// running for a client that is gone.
import http from "node:http";
import https from "node:https";
import type { AddressInfo, Socket } from "node:net";
import type { Duplex } from "node:stream";
import { createRequire } from "node:module";
import type { WebSocket, WebSocketServer } from "ws";
import { InvalidArgumentError } from "../util/errors.js";
import type { StreamingBackend } from "./backend.js";
import {
  PORTFORWARD_PROTOCOL,
  PORTFORWARD_TUNNEL_PROTOCOL,
  WS_PORTFORWARD_PROTOCOLS,
  servePortForwardSpdy,
  servePortForwardWs,
} from "./portforward.js";
import {
  type AttachRequest,
  type ExecRequest,
  type PortForwardRequest,
  type StreamRequest,
  SPDY_REMOTECOMMAND_PROTOCOLS,
} from "./remotecommand.js";
import { serveRemoteCommandSpdy } from "./remotecommand-spdy.js";
import { WS_REMOTECOMMAND_PROTOCOLS, serveRemoteCommandWs } from "./remotecommand-ws.js";
import { SpdyConnection } from "./spdy/connection.js";
import { DEFAULT_TOKEN_TTL_MS, RequestCache } from "./tokens.js";

export interface StreamingServerOptions {
  /** Address to listen on; loopback unless configured otherwise. */
  address?: string;
  /** TCP port; 0 picks a free one. */
  port?: number;
  /** PEM certificate and key: serve HTTPS (and wss) instead of plain HTTP. */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** How long a URL stays valid (default 1 minute). */
  tokenTtlMs?: number;
  /** Most URLs handed out and not yet used (default 1000). */
  maxPendingRequests?: number;
  /** How long a SPDY client has to open its streams (default 30 s, as kubelet). */
  streamCreationTimeoutMs?: number;
  backend: StreamingBackend;
}

const HEADER_PROTOCOL_VERSION = "x-stream-protocol-version";

// `ws` (about 3 MiB of loaded modules) is required at the first WebSocket upgrade: berthd
// starts this server at start, and many nodes never see a WebSocket stream (issue 15).
const require = createRequire(import.meta.url);
let wsModule: typeof import("ws") | undefined;
const wsLib = () => (wsModule ??= require("ws") as typeof import("ws"));

interface Session {
  abort: AbortController;
  socket: Duplex;
}

export class StreamingServer {
  private readonly server: http.Server | https.Server;
  private wssInstance: WebSocketServer | undefined;
  private readonly chosenWsProtocol = new WeakMap<http.IncomingMessage, string>();
  private readonly cache: RequestCache<StreamRequest>;
  private readonly sessions = new Set<Session>();
  private readonly sockets = new Set<Duplex>();
  private readonly streamCreationTimeoutMs: number;
  private base: string | undefined;

  constructor(private readonly opts: StreamingServerOptions) {
    this.cache = new RequestCache(opts.tokenTtlMs ?? DEFAULT_TOKEN_TTL_MS, opts.maxPendingRequests);
    this.streamCreationTimeoutMs = opts.streamCreationTimeoutMs ?? 30_000;
    this.server = opts.tls ? https.createServer({ cert: opts.tls.cert, key: opts.tls.key }) : http.createServer();
    this.server.on("request", (req, res) => this.onRequest(req, res));
    this.server.on("upgrade", (req, socket: Duplex, head: Buffer) => this.onUpgrade(req, socket, head));
    this.server.on("connection", (socket: Socket) => {
      this.sockets.add(socket);
      socket.once("close", () => this.sockets.delete(socket));
    });
  }

  /** The WebSocket server, made at the first WebSocket upgrade. */
  private get wss(): WebSocketServer {
    if (this.wssInstance) return this.wssInstance;
    const wss = new (wsLib().WebSocketServer)({
      noServer: true,
      perMessageDeflate: false,
      maxPayload: 32 * 1024 * 1024,
    });
    // The subprotocol is chosen before the handshake (see upgradeWebSocket) and answered here.
    wss.on("headers", (headers: string[], req: http.IncomingMessage) => {
      const p = this.chosenWsProtocol.get(req);
      if (p) headers.push(`Sec-WebSocket-Protocol: ${p}`);
    });
    return (this.wssInstance = wss);
  }

  /** Starts listening and returns the base URL, e.g. http://127.0.0.1:41234. */
  async start(): Promise<string> {
    const address = this.opts.address ?? "127.0.0.1";
    await new Promise<void>((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(this.opts.port ?? 0, address, () => {
        this.server.off("error", reject);
        resolve();
      });
    });
    const { port } = this.server.address() as AddressInfo;
    const host = address.includes(":") ? `[${address}]` : address;
    this.base = `${this.opts.tls ? "https" : "http"}://${host}:${port}`;
    return this.base;
  }

  get baseUrl(): string {
    if (!this.base) throw new Error("streaming server not started");
    return this.base;
  }

  /** Sessions currently being served (upgraded connections). */
  get activeSessions(): number {
    return this.sessions.size;
  }

  getExecUrl(req: ExecRequest): string {
    validateCommand(req, "exec");
    if (req.cmd.length === 0) throw new InvalidArgumentError("cmd must not be empty");
    return this.url("exec", { kind: "exec", req: { ...req, cmd: [...req.cmd] } });
  }

  getAttachUrl(req: AttachRequest): string {
    validateCommand(req, "attach");
    return this.url("attach", { kind: "attach", req: { ...req } });
  }

  getPortForwardUrl(req: PortForwardRequest): string {
    if (!req.podSandboxId) throw new InvalidArgumentError("missing required pod_sandbox_id");
    for (const p of req.ports) {
      if (!Number.isInteger(p) || p < 1 || p > 65535) throw new InvalidArgumentError(`invalid port ${p}`);
    }
    return this.url("portforward", { kind: "portforward", req: { ...req, ports: [...req.ports] } });
  }

  /** Stops listening and tears down every session (their backends are aborted). */
  async stop(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const s of this.sessions) s.abort.abort();
    for (const socket of this.sockets) socket.destroy();
    this.wssInstance?.close();
    await closed;
  }

  private url(kind: string, request: StreamRequest): string {
    return `${this.baseUrl}/${kind}/${this.cache.insert(request)}`;
  }

  /** Finds and consumes the request a URL stands for. */
  private lookup(req: http.IncomingMessage): StreamRequest | "method" | undefined {
    const m = /^\/(exec|attach|portforward)\/([A-Za-z0-9_-]+)$/.exec(new URL(req.url ?? "/", "http://x").pathname);
    if (!m) return undefined;
    if (req.method !== "GET" && req.method !== "POST") return "method";
    const found = this.cache.consume(m[2]);
    return found && found.kind === m[1] ? found : undefined;
  }

  private onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    // Not an upgrade. A valid token is still used up, as in kubelet, where the upgrade fails
    // only after the token was consumed.
    const found = this.lookup(req);
    if (found === "method") return void res.writeHead(405).end("405: Method Not Allowed");
    if (!found) return void res.writeHead(404, { "Content-Type": "text/plain" }).end("404 page not found\n");
    res.writeHead(400, { "Content-Type": "text/plain" }).end("unable to upgrade: missing upgrade headers in request\n");
  }

  private onUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on("error", () => socket.destroy());
    const found = this.lookup(req);
    if (found === "method") return rawResponse(socket, 405, "405: Method Not Allowed");
    if (!found) return rawResponse(socket, 404, "404 page not found\n");
    if ((req.headers.upgrade ?? "").toLowerCase() === "websocket") this.upgradeWebSocket(req, socket, head, found);
    else this.upgradeSpdy(req, socket, head, found);
  }

  private upgradeSpdy(req: http.IncomingMessage, socket: Duplex, head: Buffer, request: StreamRequest): void {
    const connection = (req.headers.connection ?? "").toLowerCase();
    const upgrade = (req.headers.upgrade ?? "").toLowerCase();
    if (!connection.includes("upgrade") || !upgrade.includes("spdy/3.1")) {
      return rawResponse(socket, 400, "unable to upgrade: missing upgrade headers in request\n");
    }
    const serverProtocols = request.kind === "portforward" ? [PORTFORWARD_PROTOCOL] : SPDY_REMOTECOMMAND_PROTOCOLS;
    const clientProtocols = headerList(req.headers[HEADER_PROTOCOL_VERSION]);
    // httpstream.Handshake: the first protocol in the client's order that the server knows.
    const protocol = clientProtocols.find((p) => serverProtocols.includes(p));
    if (clientProtocols.length > 0 && !protocol) {
      const accepted = serverProtocols.map((p) => `X-Accepted-Stream-Protocol-Versions: ${p}\r\n`).join("");
      const msg = `unable to upgrade: unable to negotiate protocol: client supports [${clientProtocols.join(" ")}], server accepts [${serverProtocols.join(" ")}]\n`;
      return rawResponse(socket, 403, msg, accepted);
    }
    socket.write(
      "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n" +
        (protocol ? `X-Stream-Protocol-Version: ${protocol}\r\n` : "") +
        "\r\n",
    );
    const conn = new SpdyConnection(socket, { server: true }, head);
    // A client that predates negotiation speaks the unversioned protocol.
    this.runSession(socket, (signal) => this.serveSpdy(conn, protocol ?? "", request, signal));
  }

  private serveSpdy(
    conn: SpdyConnection,
    protocol: string,
    request: StreamRequest,
    signal: AbortSignal,
  ): Promise<void> {
    signal.addEventListener("abort", () => conn.destroy(), { once: true });
    const opts = { streamCreationTimeoutMs: this.streamCreationTimeoutMs, signal };
    if (request.kind === "portforward")
      return servePortForwardSpdy(conn, request.req.podSandboxId, this.opts.backend, opts);
    return serveRemoteCommandSpdy(conn, protocol, request, this.opts.backend, opts);
  }

  private upgradeWebSocket(req: http.IncomingMessage, socket: Duplex, head: Buffer, request: StreamRequest): void {
    const serverProtocols = request.kind === "portforward" ? WS_PORTFORWARD_PROTOCOLS : WS_REMOTECOMMAND_PROTOCOLS;
    const offered = headerList(req.headers["sec-websocket-protocol"]);
    const protocol = offered.length === 0 ? "" : offered.find((p) => serverProtocols.includes(p));
    if (protocol === undefined) {
      return rawResponse(socket, 403, `requested protocol(s) are not supported: [${offered.join(" ")}]\n`);
    }
    if (protocol) this.chosenWsProtocol.set(req, protocol);
    // `ws` refuses subprotocol names that are not RFC 7230 tokens, and kubectl's tunnel protocol
    // "SPDY/3.1+portforward.k8s.io" contains a "/": negotiate ourselves and hide the header.
    delete req.headers["sec-websocket-protocol"];
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      this.runSession(socket, (signal) => this.serveWebSocket(ws, protocol, request, signal));
    });
  }

  private serveWebSocket(ws: WebSocket, protocol: string, request: StreamRequest, signal: AbortSignal): Promise<void> {
    signal.addEventListener("abort", () => ws.terminate(), { once: true });
    const backend = this.opts.backend;
    if (request.kind !== "portforward") return serveRemoteCommandWs(ws, protocol, request, backend, signal);
    const { podSandboxId, ports } = request.req;
    if (protocol === PORTFORWARD_TUNNEL_PROTOCOL) {
      const conn = new SpdyConnection(wsLib().createWebSocketStream(ws), { server: true });
      return servePortForwardSpdy(conn, podSandboxId, backend, {
        streamCreationTimeoutMs: this.streamCreationTimeoutMs,
        signal,
      });
    }
    return servePortForwardWs(ws, protocol, podSandboxId, ports, backend, signal);
  }

  /** Runs one upgraded session; a disconnect aborts it, and it is forgotten once it is over. */
  private runSession(socket: Duplex, serve: (signal: AbortSignal) => Promise<void>): void {
    const session: Session = { abort: new AbortController(), socket };
    this.sessions.add(session);
    const onClose = () => session.abort.abort();
    socket.once("close", onClose);
    serve(session.abort.signal)
      .catch(() => undefined)
      .finally(() => {
        socket.off("close", onClose);
        if (!socket.destroyed) {
          // Served to the end; give the client a moment to read, then make sure it is gone.
          socket.once("close", () => this.sessions.delete(session));
          setTimeout(() => socket.destroy(), 5000).unref();
        } else this.sessions.delete(session);
      });
  }
}

function validateCommand(req: AttachRequest, what: string): void {
  if (!req.containerId) throw new InvalidArgumentError("missing required container_id");
  if (req.tty && req.stderr) {
    throw new InvalidArgumentError("tty and stderr cannot both be true: a terminal has a single output stream");
  }
  if (!req.stdin && !req.stdout && !req.stderr) {
    throw new InvalidArgumentError(`one of stdin, stdout, or stderr must be set for ${what}`);
  }
}

/** Values of a possibly repeated, comma-separated header. */
function headerList(v: string | string[] | undefined): string[] {
  const all = Array.isArray(v) ? v : v === undefined ? [] : [v];
  return all
    .flatMap((h) => h.split(","))
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

function rawResponse(socket: Duplex, code: number, body: string, extraHeaders = ""): void {
  const reason = http.STATUS_CODES[code] ?? "";
  socket.end(
    `HTTP/1.1 ${code} ${reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
      `${extraHeaders}Connection: close\r\n\r\n${body}`,
  );
}
