// Container stdio through named pipes, the way containerd's CRI plugin does it, so it works
// with any shim (berth's and containerd-shim-runc-v2): berthd creates a fifo per stream,
// the shim writes the process's output into it, and berthd turns it into CRI log records.
//
// Why fifos survive a berthd restart: the shim side holds each fifo open for reading AND
// writing (berth's monitor opens it O_RDWR; the runc shim opens both ends), so the pipe and
// whatever it buffers outlive berthd; while berthd is down the container blocks on a full
// pipe instead of losing output, and a restarted berthd opens the fifos again and goes on.
//
// End of output: berthd opens its read end non-blocking, and holds a write end of its own
// until the shim has opened the fifo (the task exists), so the reader never sees an early
// EOF; after that, EOF means the shim closed its end: the process exited and all output is
// in.
import { closeSync, constants, mkdirSync, openSync } from "node:fs";
import { rm } from "node:fs/promises";
import { Socket } from "node:net";
import { join } from "node:path";
import { CriLineSplitter, CriLogFile, type LogStream } from "../runtime/cri-log.js";
import * as sys from "../sys/index.js";
import { FifoWriter } from "./fifo-streams.js";

export function makeFifo(path: string): void {
  try {
    sys.mknod(path, sys.S_IFIFO | 0o600, 0);
  } catch (err) {
    if ((err as { code?: string }).code !== "EEXIST") throw err;
  }
}

/** A fifo opened for reading, delivering chunks until the last writer closes. */
export class FifoReader {
  private readonly sock: Socket;
  private holdFd: number | undefined;
  readonly done: Promise<void>;

  /** Opens `path` (creating it) for reading; with `hold`, also a write end until release(). */
  constructor(
    readonly path: string,
    onData: (chunk: Buffer) => void,
    hold: boolean,
  ) {
    makeFifo(path);
    const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
    if (hold) this.holdFd = openSync(path, constants.O_WRONLY | constants.O_NONBLOCK);
    this.sock = new Socket({ fd, readable: true, writable: false });
    this.done = new Promise((resolve) => {
      this.sock.on("data", onData);
      this.sock.once("end", () => resolve());
      this.sock.once("close", () => resolve());
      this.sock.once("error", () => resolve());
    });
  }

  /** Drops berthd's own write end: from now on EOF means the shim closed its end. */
  release(): void {
    if (this.holdFd !== undefined) {
      closeSync(this.holdFd);
      this.holdFd = undefined;
    }
  }

  close(): void {
    this.release();
    this.sock.destroy();
  }
}

export interface ContainerIoPaths {
  dir: string;
  stdin: string;
  stdout: string;
  stderr: string;
}

export function containerIoPaths(ioRoot: string, containerId: string): ContainerIoPaths {
  const dir = join(ioRoot, containerId);
  return { dir, stdin: join(dir, "stdin"), stdout: join(dir, "stdout"), stderr: join(dir, "stderr") };
}

/** Receives a copy of a container's live output (attach); called synchronously, must not block. */
export type OutputListener = (stream: LogStream, chunk: Buffer) => void;

/**
 * A container's stdout and stderr fifos pumped into its CRI log file (or discarded when the
 * pod has no log directory). reopen() switches to a new file between two records, so a
 * rotation never splits a record; a line in progress is finished in the new file.
 */
export class ContainerLogger {
  private readonly readers: FifoReader[];
  private readonly log: CriLogFile | undefined;
  private closed = false;
  private readonly listeners = new Set<OutputListener>();
  /** The writer of the container's stdin fifo, when it was created with stdin (attach writes here). */
  readonly stdin: FifoWriter | undefined;
  /** Resolves when both streams reached EOF (the process exited and its output is all written). */
  readonly done: Promise<void>;

  constructor(
    readonly paths: ContainerIoPaths,
    logPath: string,
    opts: { hold: boolean; maxLineSize?: number; stdin?: boolean },
  ) {
    mkdirSync(paths.dir, { recursive: true, mode: 0o700 });
    this.log = logPath ? new CriLogFile(logPath) : undefined;
    // Opened before the task exists and kept open for the container's life: the shim reads
    // EOF (and closes the process's stdin) only when berthd closes it.
    this.stdin = opts.stdin ? new FifoWriter(paths.stdin) : undefined;
    const sink = {
      write: (stream: LogStream, tag: "P" | "F", message: Buffer) => this.log?.write(stream, tag, message),
    };
    const readers: FifoReader[] = [];
    for (const stream of ["stdout", "stderr"] as const) {
      const splitter = new CriLineSplitter(stream, sink, opts.maxLineSize);
      const r = new FifoReader(
        paths[stream],
        (c) => {
          splitter.push(c);
          for (const l of this.listeners) l(stream, c);
        },
        opts.hold,
      );
      void r.done.then(() => splitter.end());
      readers.push(r);
    }
    this.readers = readers;
    this.done = Promise.all(readers.map((r) => r.done)).then(() => undefined);
  }

  release(): void {
    for (const r of this.readers) r.release();
  }

  reopen(): void {
    this.log?.reopen();
  }

  /** Tees the live output to `listener` (the log is written regardless); returns the unsubscribe. */
  subscribe(listener: OutputListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const r of this.readers) r.close();
    this.stdin?.destroy();
    this.listeners.clear();
    this.log?.close();
  }
}

/** Output of one ExecSync process, captured up to `limit` bytes per stream. */
export class ExecCapture {
  private readonly readers: FifoReader[];
  readonly stdout: Buffer[] = [];
  readonly stderr: Buffer[] = [];
  private sizes = { stdout: 0, stderr: 0 };
  readonly done: Promise<void>;

  constructor(
    readonly dir: string,
    readonly execId: string,
    limit: number,
  ) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    this.readers = (["stdout", "stderr"] as const).map(
      (s) =>
        new FifoReader(
          this.path(s),
          (c) => {
            const room = limit - this.sizes[s];
            if (room <= 0) return;
            const part = c.length > room ? c.subarray(0, room) : c;
            this[s].push(part);
            this.sizes[s] += part.length;
          },
          true,
        ),
    );
    this.done = Promise.all(this.readers.map((r) => r.done)).then(() => undefined);
  }

  path(s: "stdout" | "stderr"): string {
    return join(this.dir, `exec-${this.execId}-${s}`);
  }

  release(): void {
    for (const r of this.readers) r.release();
  }

  async close(): Promise<void> {
    for (const r of this.readers) r.close();
    await rm(this.path("stdout"), { force: true });
    await rm(this.path("stderr"), { force: true });
  }
}
