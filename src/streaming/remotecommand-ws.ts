// Exec and attach over WebSocket (kubelet pkg/cri/streaming/remotecommand/websocket.go):
// channels 0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize on one connection. The server first
// sends an empty message on the lowest channel it will write to, so the client knows the
// session is up; at the end it writes the Status on the error channel and closes the socket.
import type { WebSocket } from "ws";
import type { StreamingBackend } from "./backend.js";
import {
  type AttachRequest,
  type ExecRequest,
  PROTOCOL_V1,
  PROTOCOL_V4,
  PROTOCOL_V5,
  ResizeDecoder,
  ResizeQueue,
  endWritable,
  runRemoteCommand,
} from "./remotecommand.js";
import { encodeStatus } from "./status.js";
import { WsChannels } from "./ws-channels.js";

export const BASE64_V1 = "base64.channel.k8s.io";
export const BASE64_V4 = "v4.base64.channel.k8s.io";
/** The WebSocket subprotocols for exec/attach; "" (none requested) is also accepted. */
export const WS_REMOTECOMMAND_PROTOCOLS = [PROTOCOL_V5, PROTOCOL_V4, BASE64_V4, PROTOCOL_V1, BASE64_V1];

const STDIN = 0;
const STDOUT = 1;
const STDERR = 2;
const ERROR = 3;
const RESIZE = 4;

export async function serveRemoteCommandWs(
  ws: WebSocket,
  protocol: string,
  request: { kind: "exec"; req: ExecRequest } | { kind: "attach"; req: AttachRequest },
  backend: StreamingBackend,
  signal: AbortSignal,
): Promise<void> {
  const { req } = request;
  const base64 = protocol === BASE64_V1 || protocol === BASE64_V4;
  const jsonStatus = protocol === PROTOCOL_V5 || protocol === PROTOCOL_V4 || protocol === BASE64_V4;
  const mux = new WsChannels(ws, 5, {
    base64,
    closeSignal: protocol === PROTOCOL_V5,
    readable: (ch) => ch === RESIZE || (ch === STDIN && req.stdin),
  });
  const stderrWanted = req.stderr && !req.tty;

  const first = req.stdout ? STDOUT : stderrWanted ? STDERR : ERROR;
  mux.channel(first).write(Buffer.alloc(0));

  const resize = new ResizeQueue();
  mux.channel(RESIZE).pipe(new ResizeDecoder(resize));
  const stdout = req.stdout ? mux.channel(STDOUT) : undefined;
  const stderr = stderrWanted ? mux.channel(STDERR) : undefined;
  const status = await runRemoteCommand(
    backend,
    request,
    { stdin: req.stdin ? mux.channel(STDIN) : undefined, stdout, stderr, resize },
    signal,
  );
  await Promise.all([endWritable(stdout), endWritable(stderr)]);
  const bytes = encodeStatus(status, jsonStatus);
  if (bytes) await new Promise<void>((resolve) => mux.channel(ERROR).write(bytes, () => resolve()));
  ws.close(1000);
}
