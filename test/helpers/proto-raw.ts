// protoc --decode_raw, parsed into a tree of (field number, value) pairs: a schema-less view of
// encoded bytes that does not depend on our own .proto files.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";

export type RawValue = string | bigint | RawMessage;
export type RawMessage = Array<{ n: number; v: RawValue }>;

/** Undoes protoc's C-style escaping of a quoted string value. */
function unquote(s: string): string {
  const body = s.slice(1, -1);
  const bytes: number[] = [];
  for (let i = 0; i < body.length; i++) {
    const c = body[i]!;
    if (c !== "\\") {
      bytes.push(...Buffer.from(c, "utf8"));
      continue;
    }
    const e = body[++i]!;
    if (/[0-7]/.test(e)) {
      let oct = e;
      while (oct.length < 3 && /[0-7]/.test(body[i + 1] ?? "")) oct += body[++i];
      bytes.push(parseInt(oct, 8));
    } else if (e === "x") {
      let hex = "";
      while (hex.length < 2 && /[0-9a-fA-F]/.test(body[i + 1] ?? "")) hex += body[++i];
      bytes.push(parseInt(hex, 16));
    } else {
      const map: Record<string, number> = { n: 10, r: 13, t: 9, '"': 34, "'": 39, "\\": 92 };
      assert.ok(e in map, `unknown escape \\${e}`);
      bytes.push(map[e]!);
    }
  }
  return Buffer.from(bytes).toString("utf8");
}

/**
 * Schema-less decode by protoc. Without a schema, protoc prints a length-delimited field as a
 * nested message whenever its bytes happen to parse as one, so the test strings below are
 * chosen not to (e.g. "::1" rather than "127.0.0.1", which reads as a fixed64 field).
 */
export function decodeRaw(bytes: Uint8Array): RawMessage {
  const r = spawnSync("protoc", ["--decode_raw"], { input: Buffer.from(bytes), encoding: "utf8" });
  assert.equal(r.status, 0, `protoc --decode_raw failed: ${r.stderr}`);
  const root: RawMessage = [];
  const stack: RawMessage[] = [root];
  for (const line of r.stdout.split("\n").map((l) => l.trim())) {
    if (line === "") continue;
    const top = stack[stack.length - 1]!;
    let m: RegExpMatchArray | null;
    if ((m = line.match(/^(\d+) \{$/))) {
      const child: RawMessage = [];
      top.push({ n: Number(m[1]), v: child });
      stack.push(child);
    } else if (line === "}") {
      stack.pop();
    } else if ((m = line.match(/^(\d+): (.*)$/))) {
      const text = m[2]!;
      top.push({ n: Number(m[1]), v: text.startsWith('"') ? unquote(text) : BigInt(text) });
    } else {
      assert.fail(`unexpected decode_raw line: ${line}`);
    }
  }
  return root;
}

export function all(msg: RawMessage, n: number): RawValue[] {
  return msg.filter((f) => f.n === n).map((f) => f.v);
}
export function one(msg: RawMessage, n: number): RawValue {
  const vs = all(msg, n);
  assert.equal(vs.length, 1, `expected field ${n} once, got ${vs.length}`);
  return vs[0]!;
}
export function str(msg: RawMessage, n: number): string {
  const v = one(msg, n);
  assert.equal(
    typeof v,
    "string",
    `field ${n} is not a string: ${JSON.stringify(v, (_k, x) => (typeof x === "bigint" ? `${x}n` : x))}`,
  );
  return v as string;
}
export function num(msg: RawMessage, n: number): bigint {
  const v = one(msg, n);
  assert.equal(typeof v, "bigint", `field ${n} is not a varint`);
  return v as bigint;
}
export function sub(msg: RawMessage, n: number): RawMessage {
  const v = one(msg, n);
  assert.ok(Array.isArray(v), `field ${n} is not a message`);
  return v;
}
export function subs(msg: RawMessage, n: number): RawMessage[] {
  return all(msg, n).map((v) => {
    assert.ok(Array.isArray(v), `field ${n} is not a message`);
    return v;
  });
}
/** A proto3 map field: repeated entries {1: key, 2: value}. */
export function strMap(msg: RawMessage, n: number): Record<string, string> {
  return Object.fromEntries(subs(msg, n).map((e) => [str(e, 1), str(e, 2)]));
}
