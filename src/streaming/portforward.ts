// Port forwarding (kubelet pkg/cri/streaming/portforward). Over SPDY (`portforward.k8s.io`) the
// client opens a data and an error stream per forwarded connection, both carrying the `port`
// header and a shared `requestID`; many connections, to several ports, share one session. Over
// WebSocket the ports come from the CRI request: channel 2i carries port i's data, 2i+1 its
// errors, and the server starts each with the port number as two little-endian bytes.
import type { WebSocket } from "ws";
import type { StreamingBackend } from "./backend.js";
import { PROTOCOL_V4, endWritable } from "./remotecommand.js";
import { RstStatus } from "./spdy/frames.js";
import type { SpdyConnection, SpdyStream } from "./spdy/connection.js";
import { BASE64_V4 } from "./remotecommand-ws.js";
import { WsChannels } from "./ws-channels.js";

export const PORTFORWARD_PROTOCOL = "portforward.k8s.io";
/** kubectl's WebSocket port-forward tunnels a SPDY session through binary messages. */
export const PORTFORWARD_TUNNEL_PROTOCOL = "SPDY/3.1+portforward.k8s.io";
export const WS_PORTFORWARD_PROTOCOLS = [PORTFORWARD_TUNNEL_PROTOCOL, PROTOCOL_V4, BASE64_V4];

interface Pair {
  requestId: string;
  data?: SpdyStream;
  error?: SpdyStream;
  timer: NodeJS.Timeout;
}

function forwardError(podSandboxId: string, port: number, err: unknown): string {
  return `error forwarding port ${port} to pod ${podSandboxId}, uid : ${err instanceof Error ? err.message : String(err)}`;
}

/** A failure the client may ride out (the target reset or stopped reading) keeps the session. */
function isConnectionLevel(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code !== "EPIPE" && code !== "ECONNRESET";
}

export function servePortForwardSpdy(
  conn: SpdyConnection,
  podSandboxId: string,
  backend: StreamingBackend,
  opts: { streamCreationTimeoutMs: number; signal: AbortSignal },
): Promise<void> {
  const pairs = new Map<string, Pair>();
  const running = new Set<Promise<void>>();

  const run = async (pair: Pair, data: SpdyStream, error: SpdyStream) => {
    const port = Number(data.header("port"));
    try {
      await backend.portForward(podSandboxId, port, data, opts.signal);
    } catch (err) {
      // kubelet answers with a JSON portForwardErrResponse; older clients show it as text.
      const resp = { closeConnection: isConnectionLevel(err), message: forwardError(podSandboxId, port, err) };
      error.write(JSON.stringify(resp) + "\n");
    }
    await Promise.all([endWritable(data), endWritable(error)]);
  };

  conn.on("stream", (s: SpdyStream) => {
    const portText = s.header("port") ?? "";
    const port = Number(portText);
    const type = s.header("streamtype");
    if (!/^\d+$/.test(portText) || port < 1 || port > 65535 || (type !== "data" && type !== "error")) {
      s.reset(RstStatus.RefusedStream);
      return;
    }
    s.reply();
    // Only the data stream carries anything from the client; drop whatever else arrives.
    if (type === "error") s.resume();
    // Clients too old to send a request id pair their streams by id (kubelet's fallback).
    const requestId = s.header("requestid") ?? String(type === "error" ? s.id : s.id - 2);
    let pair = pairs.get(requestId);
    if (!pair) {
      const p: Pair = {
        requestId,
        timer: setTimeout(() => {
          pairs.delete(requestId);
          p.error?.end(`timed out waiting for streams of request ${requestId}`);
        }, opts.streamCreationTimeoutMs),
      };
      p.timer.unref();
      pairs.set(requestId, p);
      pair = p;
    }
    if (pair[type]) {
      const msg = `error processing stream for request ${requestId}: ${type} stream already assigned`;
      (pair.error ?? s).write(msg);
      return;
    }
    pair[type] = s;
    if (pair.data && pair.error) {
      clearTimeout(pair.timer);
      pairs.delete(requestId);
      const task = run(pair, pair.data, pair.error);
      running.add(task);
      void task.finally(() => running.delete(task));
    }
  });

  return new Promise((resolve) => {
    conn.once("close", () => {
      for (const p of pairs.values()) clearTimeout(p.timer);
      void Promise.all(running).then(() => resolve());
    });
  });
}

export async function servePortForwardWs(
  ws: WebSocket,
  protocol: string,
  podSandboxId: string,
  ports: number[],
  backend: StreamingBackend,
  signal: AbortSignal,
): Promise<void> {
  const mux = new WsChannels(ws, ports.length * 2, {
    base64: protocol === BASE64_V4,
    closeSignal: false,
    readable: (ch) => ch % 2 === 0,
  });
  await Promise.all(
    ports.map(async (port, i) => {
      const data = mux.channel(2 * i);
      const error = mux.channel(2 * i + 1);
      const prefix = Buffer.alloc(2);
      prefix.writeUInt16LE(port);
      data.write(prefix);
      error.write(prefix);
      try {
        await backend.portForward(podSandboxId, port, data, signal);
      } catch (err) {
        await new Promise<void>((resolve) => error.write(forwardError(podSandboxId, port, err), () => resolve()));
      }
    }),
  );
  ws.close(1000);
}
