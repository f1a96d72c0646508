// Exec and attach over SPDY (kubelet pkg/cri/streaming/remotecommand/httpstream.go). The client
// opens one stream per channel, telling them apart by the `streamType` header: error, stdin,
// stdout, stderr and, from v3 with a tty, resize. The server accepts each (SYN_REPLY), starts the
// command once all expected streams are there, and at the end closes stdout/stderr, writes the
// Status to the error stream and closes the session.
import type { StreamingBackend } from "./backend.js";
import {
  type AttachRequest,
  type ExecRequest,
  ResizeDecoder,
  ResizeQueue,
  endWritable,
  runRemoteCommand,
  spdyProtocolVersion,
} from "./remotecommand.js";
import type { SpdyConnection, SpdyStream } from "./spdy/connection.js";
import { encodeStatus } from "./status.js";

type ChannelName = "error" | "stdin" | "stdout" | "stderr" | "resize";
const CHANNELS: readonly string[] = ["error", "stdin", "stdout", "stderr", "resize"];

export interface SpdyCommandOptions {
  streamCreationTimeoutMs: number;
  signal: AbortSignal;
}

export async function serveRemoteCommandSpdy(
  conn: SpdyConnection,
  protocol: string,
  request: { kind: "exec"; req: ExecRequest } | { kind: "attach"; req: AttachRequest },
  backend: StreamingBackend,
  opts: SpdyCommandOptions,
): Promise<void> {
  const version = spdyProtocolVersion(protocol);
  const { req } = request;
  const wantResize = req.tty && version >= 3;
  // kubelet counts the error stream plus one per requested channel.
  const expected = 1 + Number(req.stdin) + Number(req.stdout) + Number(req.stderr && !req.tty) + Number(wantResize);

  const streams = await waitForStreams(conn, expected, version, opts.streamCreationTimeoutMs);
  if (!streams) {
    await conn.close();
    return;
  }

  const resize = new ResizeQueue();
  if (streams.resize) streams.resize.pipe(new ResizeDecoder(resize));
  else resize.end();

  const status = await runRemoteCommand(
    backend,
    request,
    { stdin: streams.stdin, stdout: streams.stdout, stderr: streams.stderr, resize },
    opts.signal,
  );

  await Promise.all([endWritable(streams.stdout), endWritable(streams.stderr)]);
  const bytes = encodeStatus(status, version >= 4);
  if (bytes && streams.error && !conn.isClosed) streams.error.write(bytes);
  // Close our half of every stream: client-go waits for the server to close stdin before it
  // lets an interactive session end.
  await Promise.all([endWritable(streams.error), endWritable(streams.stdin), endWritable(streams.resize)]);
  await conn.close();
}

async function waitForStreams(
  conn: SpdyConnection,
  expected: number,
  version: number,
  timeoutMs: number,
): Promise<Partial<Record<ChannelName, SpdyStream>> | undefined> {
  const got: Partial<Record<ChannelName, SpdyStream>> = {};
  let received = 0;
  return new Promise((resolve) => {
    const finish = (result: typeof got | undefined) => {
      clearTimeout(timer);
      conn.off("stream", onStream);
      conn.off("close", onClose);
      // Streams the client opens after the command started are refused.
      if (result) conn.on("stream", (s: SpdyStream) => s.reset());
      resolve(result);
    };
    const onStream = (s: SpdyStream) => {
      // Every stream is accepted, as kubelet does; only the known ones count towards the start.
      s.reply();
      const type = s.header("streamtype") ?? "";
      // Only stdin and resize carry anything from the client; drop data sent on the others so
      // it can never fill a buffer nobody reads.
      if (type !== "stdin" && type !== "resize") s.resume();
      if (!CHANNELS.includes(type) || (type === "resize" && version < 3)) return;
      got[type as ChannelName] = s;
      if (++received === expected) finish(got);
    };
    const onClose = () => finish(undefined);
    const timer = setTimeout(() => finish(undefined), timeoutMs);
    timer.unref();
    conn.on("stream", onStream);
    conn.on("close", onClose);
  });
}
