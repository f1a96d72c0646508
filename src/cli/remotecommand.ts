// The client side of exec/attach streaming: the URL berthd's Exec/Attach return speaks the
// Kubernetes remotecommand protocol over WebSocket. Every message starts with a channel byte:
// 0 stdin, 1 stdout, 2 stderr, 3 error (a metav1.Status JSON at the end), 4 resize (JSON
// {"Width","Height"}); v5.channel.k8s.io adds [255, channel] to close a channel's input.
//
// With a tty the local terminal goes into raw mode, so Ctrl-C reaches the container as the
// byte ^C (its terminal turns it into SIGINT for the foreground process), as `docker run -it`
// does; Ctrl-P Ctrl-Q detaches and leaves the container running.
import WebSocket from "ws";

const PROTOCOLS = ["v5.channel.k8s.io", "v4.channel.k8s.io"];
const STDIN = 0;
const STDOUT = 1;
const STDERR = 2;
const ERROR = 3;
const RESIZE = 4;
const CLOSE = 255;
const CTRL_P = 0x10;
const CTRL_Q = 0x11;

export interface SessionOptions {
  stdin: boolean;
  tty: boolean;
  /** Recognise Ctrl-P Ctrl-Q as "detach" (docker's default detach keys). */
  detachKeys?: boolean;
  input?: NodeJS.ReadStream;
  output?: NodeJS.WriteStream;
  errorOutput?: NodeJS.WriteStream;
}

export interface SessionResult {
  /** The remote command's exit code when the server reported one (exec). */
  exitCode?: number;
  /** A failure message from the server's Status. */
  error?: string;
  detached: boolean;
}

interface K8sStatus {
  status?: string;
  message?: string;
  reason?: string;
  details?: { causes?: { reason?: string; message?: string }[] };
}

/** Reads the exit code from the error channel's Status (v4+ JSON; plain text before). */
export function exitFromStatus(raw: string): { exitCode?: number; error?: string } {
  let s: K8sStatus;
  try {
    s = JSON.parse(raw) as K8sStatus;
  } catch {
    return raw.trim() ? { error: raw.trim() } : {};
  }
  if (s.status === "Success") return { exitCode: 0 };
  if (s.reason === "NonZeroExitCode") {
    const c = s.details?.causes?.find((x) => x.reason === "ExitCode");
    if (c?.message && /^\d+$/.test(c.message)) return { exitCode: Number(c.message) };
  }
  return { error: s.message ?? raw };
}

/** Runs one exec/attach session to its end, wired to this process's stdio. */
export function streamSession(url: string, opts: SessionOptions): Promise<SessionResult> {
  const input = opts.input ?? process.stdin;
  const output = opts.output ?? process.stdout;
  const errorOutput = opts.errorOutput ?? process.stderr;
  const target = url.replace(/^http/, "ws");

  return new Promise((resolve, reject) => {
    const ws = new WebSocket(target, PROTOCOLS, { perMessageDeflate: false });
    let statusText = "";
    let detached = false;
    let rawMode = false;
    let opened = false;
    const cleanups: (() => void)[] = [];

    const finish = () => {
      for (const c of cleanups.splice(0)) c();
      if (rawMode && input.isTTY) input.setRawMode(false);
      const r = statusText ? exitFromStatus(statusText) : {};
      resolve({ ...r, detached });
    };

    const send = (channel: number, data: Buffer) => {
      if (ws.readyState === WebSocket.OPEN) ws.send(Buffer.concat([Buffer.from([channel]), data]));
    };

    ws.on("unexpected-response", (_req, res) => {
      let body = "";
      res.on("data", (b: Buffer) => (body += b.toString()));
      res.on("end", () =>
        reject(new Error(`streaming server refused the session: HTTP ${res.statusCode} ${body.trim()}`)),
      );
    });
    ws.on("error", (err) => {
      if (!opened) reject(new Error(`cannot connect to the streaming server at ${url}: ${err.message}`));
    });
    ws.on("message", (raw: Buffer) => {
      if (raw.length === 0) return;
      const data = raw.subarray(1);
      switch (raw[0]) {
        case STDOUT:
          output.write(data);
          break;
        case STDERR:
          errorOutput.write(data);
          break;
        case ERROR:
          statusText += data.toString();
          break;
      }
    });
    ws.on("close", finish);

    ws.on("open", () => {
      opened = true;
      const v5 = ws.protocol === "v5.channel.k8s.io";
      if (opts.tty && output.isTTY) {
        const resize = () => send(RESIZE, Buffer.from(JSON.stringify({ Width: output.columns, Height: output.rows })));
        resize();
        output.on("resize", resize);
        cleanups.push(() => output.off("resize", resize));
      }
      if (!opts.stdin) return;
      if (opts.tty && input.isTTY) {
        input.setRawMode(true);
        rawMode = true;
      }
      let sawCtrlP = false;
      const onData = (chunk: Buffer) => {
        if (opts.detachKeys && opts.tty) {
          for (let i = 0; i < chunk.length; i++) {
            if (sawCtrlP && chunk[i] === CTRL_Q) {
              detached = true;
              ws.close(1000);
              return;
            }
            sawCtrlP = chunk[i] === CTRL_P;
          }
        }
        send(STDIN, chunk);
      };
      const onEnd = () => {
        // Tell the server stdin is done (v5); older protocols cannot, the session simply goes on.
        if (v5 && ws.readyState === WebSocket.OPEN) ws.send(Buffer.from([CLOSE, STDIN]));
      };
      input.on("data", onData);
      input.once("end", onEnd);
      input.resume();
      cleanups.push(() => {
        input.off("data", onData);
        input.off("end", onEnd);
        input.pause();
      });
    });
  });
}
