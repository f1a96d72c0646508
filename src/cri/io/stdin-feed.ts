// Copies a streaming client's stdin into a process's stdin (a fifo writer), with backpressure,
// for exec and attach through the streaming server.
//
// With a tty, input is held back behind the terminal sizes the client sent before it. Over
// WebSocket the client's resize and its keystrokes travel in order on one connection, but
// berthd applies a size with an RPC to the shim while the keystrokes go straight into the fifo,
// so without the hold a shell could read "stty size" and run it before its pty had the size.
// The CLI's `exec -it` test failed that way once under load, and every time with a 300 ms delay
// put into the resize RPC.
import type { Readable } from "node:stream";

/** Where the input goes; FifoWriter is one. */
export interface StdinSink {
  /** Writes a chunk; false means wait for onDrain before writing more. */
  write(chunk: Buffer): boolean;
  onDrain(fn: () => void): void;
}

export interface FeedOptions {
  /** Runs once the client closed stdin and everything before it was written. */
  onEnd: () => Promise<void>;
  /**
   * A hold on the input: when it returns a promise, the next chunk waits for it. The terminal
   * sessions pass the resize stream's settled().
   */
  holdUntil?: () => Promise<void> | undefined;
}

/** Starts copying `input` into `out`; returns the detach function (the session is over). */
export function feedStdin(input: Readable, out: StdinSink, opts: FeedOptions): () => void {
  let detached = false;
  // A chunk held back is written before anything after it, the end included.
  let held: Promise<void> = Promise.resolve();
  let holding = false;

  const write = (chunk: Buffer) => {
    if (detached) return;
    if (out.write(chunk)) {
      if (holding) {
        holding = false;
        input.resume();
      }
      return;
    }
    input.pause();
    out.onDrain(() => {
      holding = false;
      if (!detached) input.resume();
    });
  };
  const onData = (chunk: Buffer) => {
    const hold = opts.holdUntil?.();
    if (!hold && !holding) return write(chunk);
    // Pause so no later chunk overtakes this one; write() resumes once it went out.
    holding = true;
    input.pause();
    held = Promise.all([held, hold]).then(() => write(chunk));
  };
  const onFinish = () => {
    void held.then(() => (detached ? undefined : opts.onEnd())).catch(() => {});
  };
  input.on("data", onData);
  input.once("end", onFinish);
  return () => {
    detached = true;
    input.off("data", onData);
    input.off("end", onFinish);
  };
}
