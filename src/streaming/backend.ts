// The seam between the streaming server and whatever runs processes in containers (the CRI
// wiring plugs a shim-backed implementation in here). The server owns the network side: it turns
// each protocol's streams into plain Node streams, and it reports the outcome to the client.
import type { Duplex, Readable, Writable } from "node:stream";

/** A terminal size as the client sends it on the resize stream. */
export interface TerminalSize {
  width: number;
  height: number;
}

/** The client's terminal sizes, newest last; ends with the session. */
export interface ResizeStream extends AsyncIterable<TerminalSize> {
  /**
   * Resolves once every size received so far has been handled: its consumer took it and came
   * back for the next one (or stopped consuming). Undefined when nothing is pending. Input the
   * client sent after a size must reach the terminal only after that size was applied, or a
   * program that reads its window size first (a shell running `stty size`) sees the old one.
   */
  settled(): Promise<void> | undefined;
}

export interface ExecStreams {
  /** Client input; ends when the client closes stdin. Absent when the request had no stdin. */
  stdin?: Readable;
  /**
   * Where the process's output goes. Writes respect backpressure (a `false` from write() means
   * wait for 'drain'): the buffer behind each stream is bounded, so a slow client slows the
   * process down instead of growing memory. The backend need not end these; the server ends
   * them once the returned promise settles.
   */
  stdout?: Writable;
  /** Absent with a tty: the terminal merges stderr into stdout. */
  stderr?: Writable;
  tty: boolean;
  /** Terminal sizes, newest last; ends with the session. Only a tty session receives any. */
  resize: ResizeStream;
}

export interface ExecResult {
  exitCode: number;
}

export interface StreamingBackend {
  /**
   * Runs `cmd` in the container and resolves with its exit code once the process has exited and
   * all of its output has been written to the streams. When `signal` aborts (the client went
   * away, or the server stops), the backend must kill the process and release everything.
   * A rejection is reported to the client as an internal error.
   */
  exec(containerId: string, cmd: string[], streams: ExecStreams, signal: AbortSignal): Promise<ExecResult>;
  /**
   * Connects the streams to the running container's main process; resolves when the container's
   * output ends (it exited). On abort the backend detaches; the container keeps running.
   */
  attach(containerId: string, streams: ExecStreams, signal: AbortSignal): Promise<void>;
  /**
   * Connects `stream` to TCP `port` inside the pod's network namespace and copies both ways,
   * half-closing each direction as its source ends; resolves when both directions are done.
   * On abort it closes the connection.
   */
  portForward(podSandboxId: string, port: number, stream: Duplex, signal: AbortSignal): Promise<void>;
}
