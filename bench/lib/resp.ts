// A minimal Redis (RESP2) client for the transport comparison: commands as arrays of bulk
// strings, replies parsed in order. Binary-safe (bulk strings are Buffers). Enough for
// LPUSH / BLPOP / PING; not a general client (no pub/sub, no RESP3).
import { connect, type Socket } from "node:net";

type Reply = Buffer | string | number | null | Reply[];

export class RespClient {
  private chunks: Buffer[] = [];
  private have = 0;
  /** Bytes the reply being read needs at least (so a 4 MiB reply is joined once, not per chunk). */
  private need = 1;
  private readonly waiting: { resolve(r: Reply): void; reject(e: Error): void }[] = [];

  private constructor(private readonly sock: Socket) {
    sock.on("data", (chunk: Buffer) => {
      this.chunks.push(chunk);
      this.have += chunk.length;
      if (this.have < this.need) return;
      let buf = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
      for (;;) {
        const r = parse(buf, 0);
        if ("need" in r) {
          this.need = r.need;
          break;
        }
        buf = buf.subarray(r.end);
        this.need = 1;
        const w = this.waiting.shift();
        if (r.value instanceof Error) w?.reject(r.value);
        else w?.resolve(r.value);
      }
      this.chunks = buf.length ? [buf] : [];
      this.have = buf.length;
    });
    const fail = (e: Error) => {
      for (const w of this.waiting.splice(0)) w.reject(e);
    };
    sock.on("error", fail);
    sock.on("close", () => fail(new Error("redis connection closed")));
  }

  static open(path: string): Promise<RespClient> {
    return new Promise((resolve, reject) => {
      const sock = connect(path, () => resolve(new RespClient(sock)));
      sock.once("error", reject);
    });
  }

  command(...args: (string | Buffer)[]): Promise<Reply> {
    const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
    for (const a of args) {
      const b = typeof a === "string" ? Buffer.from(a) : a;
      parts.push(Buffer.from(`$${b.length}\r\n`), b, Buffer.from("\r\n"));
    }
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      this.sock.write(Buffer.concat(parts));
    });
  }

  close(): void {
    this.sock.destroy();
  }
}

type Parsed = { value: Reply | Error; end: number } | { need: number };

/** One reply at `pos`, or how many bytes `b` must hold at least before it can be read. */
function parse(b: Buffer, pos: number): Parsed {
  const eol = b.indexOf("\r\n", pos);
  if (eol < 0) return { need: b.length + 1 };
  const line = b.toString("latin1", pos + 1, eol);
  switch (b[pos]) {
    case 0x2b: // +
      return { value: line, end: eol + 2 };
    case 0x2d: // -
      return { value: new Error(`redis: ${line}`), end: eol + 2 };
    case 0x3a: // :
      return { value: Number(line), end: eol + 2 };
    case 0x24: {
      // $
      const n = Number(line);
      if (n < 0) return { value: null, end: eol + 2 };
      if (b.length < eol + 2 + n + 2) return { need: eol + 2 + n + 2 };
      return { value: b.subarray(eol + 2, eol + 2 + n), end: eol + 2 + n + 2 };
    }
    case 0x2a: {
      // *
      const n = Number(line);
      if (n < 0) return { value: null, end: eol + 2 };
      const items: Reply[] = [];
      let at = eol + 2;
      for (let i = 0; i < n; i++) {
        const r = parse(b, at);
        if ("need" in r || r.value instanceof Error) return r;
        items.push(r.value);
        at = r.end;
      }
      return { value: items, end: at };
    }
    default:
      throw new Error(`redis: unexpected reply byte ${b[pos]}`);
  }
}
