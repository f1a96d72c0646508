// Structured logging for berthd (and anything else that wants it): pino, written synchronously
// to stderr so a line logged just before exit is never lost. Components get child loggers
// (`log.child({ component: "cri" })`) from the one the daemon builds; nothing creates its own.

import { pino, type Logger as PinoLogger } from "pino";

export type Logger = PinoLogger;
export type LogLevel = "trace" | "debug" | "info" | "warn" | "error" | "fatal";
export type LogFormat = "json" | "text";

export interface LoggerOptions {
  level: LogLevel;
  format: LogFormat;
  /** File descriptor to write to; stderr by default. */
  fd?: number;
  /** Fields on every line, e.g. { pid } or { name: "berthd" }. */
  base?: Record<string, unknown>;
}

const levelNames: Record<number, string> = {
  10: "TRACE",
  20: "DEBUG",
  30: "INFO",
  40: "WARN",
  50: "ERROR",
  60: "FATAL",
};

function textValue(v: unknown): string {
  if (typeof v === "string") return /^[^\s"=]+$/.test(v) ? v : JSON.stringify(v);
  return JSON.stringify(v) ?? String(v);
}

/** Turns one pino JSON line into `TIME LEVEL msg key=value ...` (the "text" format). */
export function formatTextLine(jsonLine: string): string {
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(jsonLine) as Record<string, unknown>;
  } catch {
    return jsonLine;
  }
  const { time, level, msg, err, ...rest } = rec;
  const when = typeof time === "number" ? new Date(time).toISOString() : String(time ?? "");
  const lvl = (levelNames[level as number] ?? String(level)).padEnd(5);
  const fields = Object.entries(rest).map(([k, v]) => `${k}=${textValue(v)}`);
  let line = `${when} ${lvl} ${msg ?? ""}${fields.length ? " " + fields.join(" ") : ""}`;
  const stack = (err as { stack?: unknown } | undefined)?.stack;
  if (typeof stack === "string") line += `\n${stack.replace(/^/gm, "    ")}`;
  else if (err !== undefined) line += ` err=${textValue(err)}`;
  return line + "\n";
}

export function createLogger(opts: LoggerOptions): Logger {
  const fd = opts.fd ?? 2;
  const options = {
    level: opts.level,
    base: opts.base ?? {},
    timestamp: opts.format === "json" ? pino.stdTimeFunctions.isoTime : pino.stdTimeFunctions.epochTime,
  };
  if (opts.format === "json") return pino(options, pino.destination({ fd, sync: true }));
  const dest = pino.destination({ fd, sync: true });
  return pino(options, { write: (line: string) => dest.write(formatTextLine(line)) });
}

/** A logger that drops everything, for code paths and tests that need one but want no output. */
export function silentLogger(): Logger {
  return pino({ level: "silent" });
}
