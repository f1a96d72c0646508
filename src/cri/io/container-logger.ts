// A container's stdio as berthd sees it: the fifo paths under <state>/io/<id>, the log pump
// that turns the output into CRI log records (and tees it to attach clients), and ExecSync's
// capture of one process's output.
import { mkdirSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { CriLineSplitter, CriLogFile, type LogStream } from "./cri-log.js";
import { FifoReader, FifoWriter } from "./fifo.js";

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
