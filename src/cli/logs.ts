// Reading container logs straight from the CRI log file that berthd writes (the path is
// ContainerStatus.log_path). Each record is `<RFC3339Nano> <stdout|stderr> <P|F> <text>`; a
// line split into P (partial) records ends with an F record, and the reader joins them back
// into one line, as kubelet's log reader does.
import { closeSync, fstatSync, openSync, readSync, statSync } from "node:fs";

export type LogStream = "stdout" | "stderr";

export interface LogLine {
  /** The timestamp of the line's first record, as written. */
  time: string;
  /** Milliseconds since the epoch (for --since). */
  timeMs: number;
  stream: LogStream;
  /** The full line including its "\n" (absent when output ended mid-line). */
  content: Buffer;
}

interface Record_ {
  time: string;
  stream: LogStream;
  partial: boolean;
  content: Buffer;
}

/** Parses one record (without its trailing newline); undefined for a malformed one. */
export function parseRecord(line: Buffer): Record_ | undefined {
  const s1 = line.indexOf(0x20);
  const s2 = s1 < 0 ? -1 : line.indexOf(0x20, s1 + 1);
  if (s2 < 0) return undefined;
  const stream = line.subarray(s1 + 1, s2).toString();
  if (stream !== "stdout" && stream !== "stderr") return undefined;
  // The tag is optional in the oldest format; when present it is P or F followed by a space.
  let rest = line.subarray(s2 + 1);
  let partial = false;
  if (rest.length >= 1 && (rest[0] === 0x50 || rest[0] === 0x46) && (rest.length === 1 || rest[1] === 0x20)) {
    partial = rest[0] === 0x50;
    rest = rest.subarray(Math.min(2, rest.length));
  }
  return { time: line.subarray(0, s1).toString(), stream, partial, content: rest };
}

/** Milliseconds of an RFC3339(Nano) time; NaN when it is not one. */
export function timeMs(rfc3339: string): number {
  return Date.parse(rfc3339.replace(/(\.\d{3})\d+/, "$1"));
}

/** Joins P records into lines, per stream. */
export class LineAssembler {
  private pending = new Map<LogStream, { time: string; parts: Buffer[] }>();

  push(rec: Record_): LogLine | undefined {
    const p = this.pending.get(rec.stream);
    if (rec.partial) {
      if (p) p.parts.push(rec.content);
      else this.pending.set(rec.stream, { time: rec.time, parts: [rec.content] });
      return undefined;
    }
    this.pending.delete(rec.stream);
    const time = p?.time ?? rec.time;
    return {
      time,
      timeMs: timeMs(time),
      stream: rec.stream,
      content: Buffer.concat([...(p?.parts ?? []), rec.content, Buffer.from("\n")]),
    };
  }

  /** Lines still waiting for their F record (output that ended mid-line), without a newline. */
  flush(): LogLine[] {
    const out = [...this.pending.entries()].map(([stream, p]) => ({
      time: p.time,
      timeMs: timeMs(p.time),
      stream,
      content: Buffer.concat(p.parts),
    }));
    this.pending.clear();
    return out;
  }
}

/** Reads complete records appended to a file since the last call; follows a file replaced by rotation. */
export class LogFileReader {
  private fd: number | undefined;
  private ino = 0;
  private offset = 0;
  private rest = Buffer.alloc(0);

  constructor(readonly path: string) {}

  private open(): boolean {
    try {
      this.fd = openSync(this.path, "r");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
      throw err;
    }
    this.ino = fstatSync(this.fd).ino;
    this.offset = 0;
    this.rest = Buffer.alloc(0);
    return true;
  }

  /** Records completed since the last call. */
  read(): Record_[] {
    if (this.fd === undefined && !this.open()) return [];
    const out: Record_[] = [];
    this.drain(out);
    // Rotated (renamed and recreated)? Finish the old file, then move to the new one.
    let current: number | undefined;
    try {
      current = statSync(this.path).ino;
    } catch {
      current = undefined;
    }
    if (current !== undefined && current !== this.ino) {
      closeSync(this.fd!);
      this.fd = undefined;
      if (this.open()) this.drain(out);
    }
    return out;
  }

  private drain(out: Record_[]): void {
    const buf = Buffer.alloc(256 * 1024);
    for (;;) {
      const n = readSync(this.fd!, buf, 0, buf.length, this.offset);
      if (n <= 0) break;
      this.offset += n;
      let data = Buffer.concat([this.rest, buf.subarray(0, n)]);
      let nl: number;
      while ((nl = data.indexOf(0x0a)) >= 0) {
        const rec = parseRecord(data.subarray(0, nl));
        if (rec) out.push({ ...rec, content: Buffer.from(rec.content) });
        data = data.subarray(nl + 1);
      }
      this.rest = Buffer.from(data);
    }
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

/** Parses --since: a duration ("10m", "1h30m", "45s") before now, or an RFC3339 time / unix seconds. */
export function parseSince(v: string, now = Date.now()): number {
  const dur = /^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+)ms)?$/.exec(v);
  if (dur && v !== "") {
    const [, h, m, s, ms] = dur;
    return now - ((Number(h ?? 0) * 60 + Number(m ?? 0)) * 60 + Number(s ?? 0)) * 1000 - Number(ms ?? 0);
  }
  if (/^\d+(\.\d+)?$/.test(v)) return Number(v) * 1000;
  const t = timeMs(v);
  if (Number.isNaN(t))
    throw new Error(`--since: ${JSON.stringify(v)} is neither a duration (10m, 1h) nor a time (2024-01-02T15:04:05Z)`);
  return t;
}
