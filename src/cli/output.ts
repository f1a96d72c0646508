// Output helpers shared by the commands: aligned tables, short ids, human sizes and times,
// colours (only on a terminal, never with NO_COLOR), and --output json|yaml for scripts.
import { stringify as toYaml } from "yaml";
import { CliError, EXIT_USAGE } from "./errors.js";

export type Format = "table" | "json" | "yaml";

export function parseFormat(v: string | undefined): Format {
  if (v === undefined || v === "" || v === "table") return "table";
  if (v === "json" || v === "yaml") return v;
  throw new CliError(`--output must be json, yaml or table, not ${JSON.stringify(v)}`, undefined, EXIT_USAGE);
}

/** Whether to colour what goes to `stream`: a terminal, NO_COLOR unset, TERM not "dumb". */
export function colorsOn(stream: NodeJS.WriteStream = process.stdout): boolean {
  if (process.env.NO_COLOR !== undefined && process.env.NO_COLOR !== "") return false;
  if (process.env.TERM === "dumb") return false;
  return stream.isTTY === true;
}

function paint(code: number, stream?: NodeJS.WriteStream) {
  return (s: string) => (colorsOn(stream) ? `\x1b[${code}m${s}\x1b[0m` : s);
}
export const bold = paint(1);
export const dim = paint(2);
export const green = paint(32);
export const yellow = paint(33);
export const red = paint(31);
export const redErr = paint(31, process.stderr);
export const yellowErr = paint(33, process.stderr);

// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-9;]*m/g;
const visibleLength = (s: string) => s.replace(ANSI, "").length;

/** Columns separated by three spaces, like docker; the last column is not padded. */
export function table(headers: string[], rows: string[][]): string {
  const all = [headers.map((h) => bold(h)), ...rows];
  const widths = headers.map((_, i) => Math.max(...all.map((r) => visibleLength(r[i] ?? ""))));
  return all
    .map((r) =>
      r
        .map((cell, i) => (i === r.length - 1 ? cell : cell + " ".repeat(widths[i] - visibleLength(cell))))
        .join("   ")
        .trimEnd(),
    )
    .join("\n");
}

/** The 12-character short form of an id ("sha256:" dropped). */
export function shortId(id: string): string {
  return id.replace(/^sha256:/, "").slice(0, 12);
}

/** Bytes in SI units as docker shows them: "1.23MB", "5.6kB", "0B". */
export function humanSize(bytes: number | bigint): string {
  let n = Number(bytes);
  const units = ["B", "kB", "MB", "GB", "TB", "PB"];
  let u = 0;
  while (n >= 1000 && u < units.length - 1) {
    n /= 1000;
    u++;
  }
  return u === 0 ? `${n}B` : `${n.toPrecision(3).replace(/\.?0+$/, "")}${units[u]}`;
}

/** Binary units for memory ("12.5MiB"), as docker stats shows them. */
export function humanBinary(bytes: number | bigint): string {
  let n = Number(bytes);
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let u = 0;
  while (n >= 1024 && u < units.length - 1) {
    n /= 1024;
    u++;
  }
  return u === 0 ? `${n}B` : `${n.toFixed(n >= 100 ? 0 : n >= 10 ? 1 : 2)}${units[u]}`;
}

/** "3 minutes ago" for a time in unix nanoseconds. */
export function ago(ns: bigint, now = Date.now()): string {
  if (ns <= 0n) return "";
  const s = Math.max(0, Math.floor((now - Number(ns / 1_000_000n)) / 1000));
  return `${humanDuration(s)} ago`;
}

/** docker's units.HumanDuration, in seconds. */
export function humanDuration(s: number): string {
  if (s < 1) return "Less than a second";
  if (s === 1) return "1 second";
  if (s < 60) return `${s} seconds`;
  const m = Math.floor(s / 60);
  if (m === 1) return "About a minute";
  if (m < 60) return `${m} minutes`;
  const h = Math.round(m / 60);
  if (h === 1) return "About an hour";
  if (h < 48) return `${h} hours`;
  if (h < 24 * 7 * 2) return `${Math.round(h / 24)} days`;
  if (h < 24 * 30 * 2) return `${Math.round(h / 24 / 7)} weeks`;
  if (h < 24 * 365 * 2) return `${Math.round(h / 24 / 30)} months`;
  return `${Math.round(h / 24 / 365)} years`;
}

/** Plain data for JSON/YAML: bigints become numbers (or strings past 2^53), Buffers base64. */
export function plain(v: unknown): unknown {
  if (typeof v === "bigint")
    return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= -BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString();
  if (Buffer.isBuffer(v)) return v.toString("base64");
  if (Array.isArray(v)) return v.map(plain);
  if (v && typeof v === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) if (x !== undefined) out[k] = plain(x);
    return out;
  }
  return v;
}

export function structured(data: unknown, format: "json" | "yaml"): string {
  const p = plain(data);
  return format === "json" ? JSON.stringify(p, null, 2) : toYaml(p).trimEnd();
}

/** Prints rows as a table, ids (-q), or JSON/YAML of the full objects. */
export function emit<T>(
  items: T[],
  opts: { output?: string; quiet?: boolean },
  view: { headers: string[]; row: (item: T) => string[]; id: (item: T) => string; data?: (item: T) => unknown },
): void {
  const format = parseFormat(opts.output);
  if (opts.quiet) {
    for (const i of items) process.stdout.write(view.id(i) + "\n");
    return;
  }
  if (format !== "table") {
    process.stdout.write(
      structured(
        items.map((i) => (view.data ? view.data(i) : i)),
        format,
      ) + "\n",
    );
    return;
  }
  process.stdout.write(table(view.headers, items.map(view.row)) + "\n");
}

/** Truncates to `n` characters with an ellipsis, for COMMAND columns. */
export function ellipsis(s: string, n: number): string {
  return s.length <= n ? s : s.slice(0, n - 1) + "…";
}
