// A WebSocket client for the streaming tests, speaking the channel protocols of apimachinery's
// wsstream as client-go's WebSocket executor (v5) and older channel.k8s.io clients do: one
// channel byte (or ASCII digit + base64 in the base64 variants) before each message, and in v5
// the [255, channel] close signal.
import { createHash, randomBytes } from "node:crypto";
import http from "node:http";
import WebSocket from "ws";

export interface WsOpenResult {
  ws?: WebSocket;
  protocol?: string;
  /** The demultiplexer, attached when the socket opened so no early message is missed. */
  client?: ChannelClient;
  status?: number;
}

/** Opens the WebSocket; resolves with the HTTP status instead when the upgrade is refused. */
export function wsOpen(url: string, protocols: string[]): Promise<WsOpenResult> {
  const target = url.replace(/^http/, "ws");
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(target, protocols, { rejectUnauthorized: false, perMessageDeflate: false });
    // The server may send its first message in the same packet as the 101: listen synchronously.
    ws.once("open", () =>
      resolve({ ws, protocol: ws.protocol, client: new ChannelClient(ws, ws.protocol.includes("base64")) }),
    );
    ws.once("unexpected-response", (_req, res) => {
      resolve({ status: res.statusCode });
      res.resume();
      ws.terminate();
    });
    ws.once("error", reject);
  });
}

/** Demultiplexes a channel WebSocket. */
export class ChannelClient {
  readonly chunks = new Map<number, Buffer[]>();
  /** Every message as received, for assertions on framing. */
  readonly messages: { channel: number; data: Buffer }[] = [];
  readonly closed: Promise<{ code: number }>;
  private listeners: (() => void)[] = [];

  constructor(
    readonly ws: WebSocket,
    private readonly base64 = false,
  ) {
    ws.on("message", (raw: Buffer) => {
      if (raw.length === 0) return;
      let channel = raw[0];
      let data = raw.subarray(1);
      if (this.base64) {
        channel -= 48;
        data = Buffer.from(data.toString("latin1"), "base64");
      }
      this.messages.push({ channel, data });
      const list = this.chunks.get(channel) ?? [];
      list.push(data);
      this.chunks.set(channel, list);
      for (const l of this.listeners) l();
    });
    this.closed = new Promise((resolve) => ws.once("close", (code: number) => resolve({ code })));
  }

  send(channel: number, data: Buffer | string): void {
    const buf = Buffer.from(data);
    if (this.base64) this.ws.send(String.fromCharCode(48 + channel) + buf.toString("base64"));
    else this.ws.send(Buffer.concat([Buffer.from([channel]), buf]));
  }

  /** v5.channel.k8s.io CLOSE signal: the client will send nothing more on `channel`. */
  closeChannel(channel: number): void {
    this.ws.send(Buffer.from([255, channel]));
  }

  output(channel: number): Buffer {
    return Buffer.concat(this.chunks.get(channel) ?? []);
  }

  /** Resolves once `pred` holds for the output received so far (rejects after `timeoutMs`). */
  waitFor(pred: () => boolean, timeoutMs = 10_000): Promise<void> {
    return new Promise((resolve, reject) => {
      if (pred()) return resolve();
      const timer = setTimeout(() => {
        const seen = this.messages.map((m) => `${m.channel}:${JSON.stringify(m.data.toString())}`).join(" ");
        reject(new Error(`timed out; received ${seen}`));
      }, timeoutMs);
      const check = () => {
        if (!pred()) return;
        this.listeners = this.listeners.filter((l) => l !== check);
        clearTimeout(timer);
        resolve();
      };
      this.listeners.push(check);
      void this.closed.then(() =>
        pred() ? resolve() : reject(new Error("connection closed before the condition held")),
      );
    });
  }
}

/**
 * Opens a WebSocket offering one subprotocol that the `ws` client refuses to send because it is
 * not an RFC 7230 token: kubectl's "SPDY/3.1+portforward.k8s.io". The handshake is done here;
 * the socket is then handed to `ws` the way its own server does (`setSocket`), as a client.
 */
export function wsOpenRaw(url: string, protocol: string): Promise<{ ws: WebSocket; protocol: string }> {
  const key = randomBytes(16).toString("base64");
  return new Promise((resolve, reject) => {
    const req = http.request(url, {
      headers: {
        Connection: "Upgrade",
        Upgrade: "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": key,
        "Sec-WebSocket-Protocol": protocol,
      },
    });
    req.on("upgrade", (res, socket, head) => {
      const accept = createHash("sha1").update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest("base64");
      if (res.headers["sec-websocket-accept"] !== accept) return reject(new Error("bad Sec-WebSocket-Accept"));
      type Internal = WebSocket & {
        _isServer: boolean;
        setSocket(s: unknown, h: Buffer, o: { maxPayload: number; skipUTF8Validation: boolean }): void;
      };
      const ws = new (WebSocket as unknown as new (a: null, p: undefined, o: object) => Internal)(null, undefined, {
        autoPong: true,
        closeTimeout: 30_000,
      });
      ws._isServer = false; // mask what we send, expect unmasked frames
      ws.setSocket(socket, head, { maxPayload: 0, skipUTF8Validation: false });
      resolve({ ws, protocol: String(res.headers["sec-websocket-protocol"] ?? "") });
    });
    req.on("response", (res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
    req.on("error", reject);
    req.end();
  });
}
