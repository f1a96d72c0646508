// The transport-independent half of exec and attach: the request a token stands for, the resize
// events, running the backend and turning its outcome into the Status the client expects
// (kubelet pkg/cri/streaming/remotecommand, client-go tools/remotecommand).
import { type Readable, Writable } from "node:stream";
import type { ResizeStream, StreamingBackend, TerminalSize } from "./backend.js";
import { type Status, exitCodeStatus, internalErrorStatus, successStatus } from "./status.js";

export interface ExecRequest {
  containerId: string;
  cmd: string[];
  tty: boolean;
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
}

export type AttachRequest = Omit<ExecRequest, "cmd">;

export interface PortForwardRequest {
  podSandboxId: string;
  ports: number[];
}

export type StreamRequest =
  | { kind: "exec"; req: ExecRequest }
  | { kind: "attach"; req: AttachRequest }
  | { kind: "portforward"; req: PortForwardRequest };

/** Remote command subprotocols, newest first (apimachinery pkg/util/remotecommand/constants.go). */
export const PROTOCOL_V5 = "v5.channel.k8s.io";
export const PROTOCOL_V4 = "v4.channel.k8s.io";
export const PROTOCOL_V3 = "v3.channel.k8s.io";
export const PROTOCOL_V2 = "v2.channel.k8s.io";
export const PROTOCOL_V1 = "channel.k8s.io";
export const SPDY_REMOTECOMMAND_PROTOCOLS = [PROTOCOL_V5, PROTOCOL_V4, PROTOCOL_V3, PROTOCOL_V2, PROTOCOL_V1];

/** The protocol generation whose stream semantics a subprotocol selects over SPDY. */
export function spdyProtocolVersion(protocol: string): 1 | 2 | 3 | 4 {
  switch (protocol) {
    case PROTOCOL_V5: // v5 only adds the WebSocket close signal; over SPDY it is v4
    case PROTOCOL_V4:
      return 4;
    case PROTOCOL_V3:
      return 3;
    case PROTOCOL_V2:
      return 2;
    default:
      return 1;
  }
}

/**
 * Resize events for the backend. Sizes are idempotent, so when the backend lags behind the
 * queue keeps only the newest few instead of growing without bound.
 */
export class ResizeQueue implements ResizeStream {
  private readonly items: TerminalSize[] = [];
  private waiter: (() => void) | undefined;
  private ended = false;
  /** The consumer took a size and has not come back for the next one yet. */
  private handling = false;
  /** The consumer stopped iterating: nothing pending will be handled. */
  private abandoned = false;
  private settledWaiters: (() => void)[] = [];
  private static readonly LIMIT = 8;

  push(size: TerminalSize): void {
    if (this.ended) return;
    if (this.items.length >= ResizeQueue.LIMIT) this.items.shift();
    this.items.push(size);
    this.wake();
  }

  end(): void {
    this.ended = true;
    this.wake();
    this.wakeSettled();
  }

  settled(): Promise<void> | undefined {
    if (this.ended || this.abandoned || (!this.handling && this.items.length === 0)) return undefined;
    return new Promise((resolve) => this.settledWaiters.push(resolve));
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }

  private wakeSettled(): void {
    for (const w of this.settledWaiters.splice(0)) w();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<TerminalSize> {
    try {
      for (;;) {
        const next = this.items.shift();
        if (next) {
          this.handling = true;
          yield next;
          continue;
        }
        this.handling = false;
        this.wakeSettled();
        if (this.ended) return;
        await new Promise<void>((resolve) => (this.waiter = resolve));
      }
    } finally {
      this.handling = false;
      this.abandoned = true;
      this.wakeSettled();
    }
  }
}

/**
 * Decodes the resize stream: a sequence of JSON TerminalSize objects ({"Width":80,"Height":24},
 * newline-separated as Go's json.Encoder writes them). Field names match case-insensitively,
 * as Go's decoder does. Bad input ends the decoding, like kubelet's handleResizeEvents.
 */
export class ResizeDecoder extends Writable {
  private pending = "";
  private broken = false;

  constructor(private readonly queue: ResizeQueue) {
    super();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    if (!this.broken) this.consume(chunk.toString("utf8"));
    cb();
  }

  override _final(cb: () => void): void {
    this.queue.end();
    cb();
  }

  private consume(text: string): void {
    this.pending += text;
    if (this.pending.length > 64 * 1024) {
      this.broken = true;
      return;
    }
    for (;;) {
      const start = this.pending.search(/\S/);
      if (start < 0) {
        this.pending = "";
        return;
      }
      const end = objectEnd(this.pending, start);
      if (end < 0) {
        this.pending = this.pending.slice(start);
        return;
      }
      const raw = this.pending.slice(start, end);
      this.pending = this.pending.slice(end);
      let parsed: unknown;
      try {
        parsed = JSON.parse(raw);
      } catch {
        this.broken = true;
        return;
      }
      const size = toTerminalSize(parsed);
      if (size) this.queue.push(size);
    }
  }
}

/** Index just past the JSON object starting at `start`, or -1 if it is not complete yet. */
function objectEnd(s: string, start: number): number {
  if (s[start] !== "{") return s.length; // not an object: let JSON.parse reject it
  let depth = 0;
  let inString = false;
  for (let i = start; i < s.length; i++) {
    const c = s[i];
    if (inString) {
      if (c === "\\") i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === "{") depth++;
    else if (c === "}" && --depth === 0) return i + 1;
  }
  return -1;
}

function toTerminalSize(v: unknown): TerminalSize | undefined {
  if (typeof v !== "object" || v === null) return undefined;
  let width: number | undefined;
  let height: number | undefined;
  for (const [k, val] of Object.entries(v)) {
    if (typeof val !== "number" || !Number.isInteger(val) || val < 0 || val > 0xffff) continue;
    if (k.toLowerCase() === "width") width = val;
    if (k.toLowerCase() === "height") height = val;
  }
  return width === undefined || height === undefined ? undefined : { width, height };
}

export interface CommandStreams {
  stdin?: Readable;
  stdout?: Writable;
  stderr?: Writable;
  resize: ResizeQueue;
}

/** Runs the exec or attach and returns the Status to report. */
export async function runRemoteCommand(
  backend: StreamingBackend,
  request: { kind: "exec"; req: ExecRequest } | { kind: "attach"; req: AttachRequest },
  streams: CommandStreams,
  signal: AbortSignal,
): Promise<Status> {
  const io = {
    stdin: streams.stdin,
    stdout: streams.stdout,
    stderr: request.req.tty ? undefined : streams.stderr,
    tty: request.req.tty,
    resize: streams.resize,
  };
  try {
    if (request.kind === "exec") {
      const { exitCode } = await backend.exec(request.req.containerId, request.req.cmd, io, signal);
      return exitCode === 0 ? successStatus() : exitCodeStatus(request.req.cmd, exitCode);
    }
    await backend.attach(request.req.containerId, io, signal);
    return successStatus();
  } catch (err) {
    const what = request.kind === "exec" ? "error executing command in container" : "error attaching to container";
    return internalErrorStatus(`${what}: ${err instanceof Error ? err.message : String(err)}`);
  } finally {
    streams.resize.end();
  }
}

/** Ends a writable and waits until its end has been handed on (or it was torn down). */
export function endWritable(w: Writable | undefined): Promise<void> {
  if (!w || w.writableFinished || w.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      w.off("finish", done);
      w.off("close", done);
      w.off("error", done);
      resolve();
    };
    w.on("finish", done);
    w.on("close", done);
    w.on("error", done);
    if (!w.writableEnded) w.end();
  });
}
