// Container output in the CRI log format that kubelet and crictl read:
//   <RFC3339Nano timestamp> <stdout|stderr> <P|F> <message>\n
// A line longer than maxLineSize is split into P (partial) records ending with an F record;
// output that ends without a newline (the stream closed mid-line) is written as P, as
// containerd's CRI logger does. The file can be reopened (ReopenContainerLog) without
// losing a byte: pending partial input stays buffered across the reopen.
import { closeSync, fsyncSync, openSync, writeSync } from "node:fs";

import { nowNsFine } from "../../util/clock.js";

export type LogStream = "stdout" | "stderr";

export const DEFAULT_MAX_LINE_SIZE = 16 * 1024;

/** time.RFC3339Nano: nanoseconds with trailing zeros trimmed, always UTC here. */
export function rfc3339Nano(epochNs: bigint): string {
  const ms = Number(epochNs / 1_000_000n);
  const base = new Date(ms).toISOString().slice(0, 19);
  const frac = (epochNs % 1_000_000_000n).toString().padStart(9, "0").replace(/0+$/, "");
  return `${base}${frac ? "." + frac : ""}Z`;
}

/** Appends CRI-format records to a log file; one writer serves both streams of a container. */
export class CriLogFile {
  private fd: number;
  constructor(
    readonly path: string,
    private readonly clock: () => bigint = nowNsFine,
  ) {
    this.fd = openSync(path, "a", 0o640);
  }

  write(stream: LogStream, tag: "P" | "F", message: Buffer): void {
    const head = Buffer.from(`${rfc3339Nano(this.clock())} ${stream} ${tag} `);
    writeSync(this.fd, Buffer.concat([head, message, NEWLINE]));
  }

  /** Closes and opens the path again: after kubelet renamed the file, new records go to a new file. */
  reopen(): void {
    const next = openSync(this.path, "a", 0o640);
    const old = this.fd;
    this.fd = next;
    try {
      fsyncSync(old);
    } finally {
      closeSync(old);
    }
  }

  close(): void {
    closeSync(this.fd);
  }
}

const NEWLINE = Buffer.from("\n");

/** Splits one stream's raw output into CRI records. */
export class CriLineSplitter {
  private pending: Buffer[] = [];
  private pendingLen = 0;

  constructor(
    private readonly stream: LogStream,
    private readonly sink: { write(stream: LogStream, tag: "P" | "F", message: Buffer): void },
    private readonly maxLineSize = DEFAULT_MAX_LINE_SIZE,
  ) {}

  push(chunk: Buffer): void {
    let start = 0;
    while (start < chunk.length) {
      const nl = chunk.indexOf(0x0a, start);
      const end = nl === -1 ? chunk.length : nl;
      this.append(chunk.subarray(start, end));
      if (nl === -1) break;
      this.flush("F");
      start = nl + 1;
    }
  }

  /** The stream ended: a line without its newline is written as partial. */
  end(): void {
    if (this.pendingLen > 0) this.flush("P");
  }

  private append(part: Buffer): void {
    while (part.length > 0) {
      // Split only when more bytes of the same line follow: a line of exactly maxLineSize
      // bytes followed by its newline is one F record.
      if (this.pendingLen === this.maxLineSize) this.flush("P");
      const take = part.subarray(0, this.maxLineSize - this.pendingLen);
      this.pending.push(take);
      this.pendingLen += take.length;
      part = part.subarray(take.length);
    }
  }

  private flush(tag: "P" | "F"): void {
    const message = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending, this.pendingLen);
    this.pending = [];
    this.pendingLen = 0;
    this.sink.write(this.stream, tag, message);
  }
}
