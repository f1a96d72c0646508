// Loads berthd's configuration: defaults for every key (config-schema.ts), then a TOML file,
// then command-line flags, in that order of precedence (like containerd). Everything
// wrong in the file is reported at once, each problem naming the file, the dotted key and
// what is wrong, so an operator fixes the file in one pass.

import { readFileSync } from "node:fs";
import { parse as parseToml, TomlError } from "smol-toml";
import {
  describeValue,
  type AnySpec,
  type Fields,
  type FieldSpec,
  type MapSpec,
  type SectionSpec,
  type TomlValue,
} from "./config-fields.js";
import { configSchema, crossChecks, type BerthConfig, type ConfigProblem } from "./config-schema.js";

export type { BerthConfig, ConfigProblem } from "./config-schema.js";

/** Where berthd looks for its config when --config is not given; a missing file there is fine. */
export const DEFAULT_CONFIG_PATH = "/etc/berth/config.toml";

/** "FILE: KEY: PROBLEM", the one-line form of a configuration problem. */
export function formatProblem(source: string, p: ConfigProblem): string {
  return `${source}: ${p.key ? `${p.key}: ` : ""}${p.problem}`;
}

/** A configuration berthd refuses to start with. `message` lists every problem, one per line. */
export class ConfigError extends Error {
  constructor(
    /** The file (or "command line") the problems are in. */
    readonly source: string,
    readonly problems: ConfigProblem[],
    /** Extra lines after the problems, e.g. the TOML excerpt around a syntax error. */
    readonly detail = "",
  ) {
    super(problems.map((p) => formatProblem(source, p)).join("\n") + (detail ? `\n${detail}` : ""));
    this.name = "ConfigError";
  }
}

type Json = { [key: string]: unknown };

function isTable(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v) && describeValue(v) === "a table";
}

/** The configuration with every key at its default. */
export function defaultConfig(): BerthConfig {
  return defaultsOf(configSchema) as BerthConfig;
}

function defaultsOf(spec: AnySpec): unknown {
  switch (spec.kind) {
    case "field":
      return structuredClone(spec.default);
    case "section":
      return Object.fromEntries(Object.entries(spec.fields).map(([k, s]) => [k, defaultsOf(s)]));
    case "map":
      return Object.fromEntries(
        Object.entries(spec.defaults).map(([name, partial]) => [
          name,
          { ...(defaultsOf(spec.entry) as Json), ...structuredClone(partial) },
        ]),
      );
  }
}

function levenshtein(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diag = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return row[b.length];
}

/** Every dotted path of the schema, map entries written as <name>. */
function allKeys(spec: AnySpec, prefix: string): string[] {
  if (spec.kind === "field") return [prefix];
  if (spec.kind === "map") return [prefix, ...allKeys(spec.entry, `${prefix}.<name>`)];
  return Object.entries(spec.fields).flatMap(([k, s]) => allKeys(s, prefix ? `${prefix}.${k}` : k));
}

function unknownKeyProblem(key: string, where: string, siblings: string[]): string {
  const close = siblings
    .map((s) => ({ s, d: levenshtein(key.toLowerCase(), s.toLowerCase()) }))
    .filter(({ s, d }) => d <= Math.max(1, Math.floor(Math.max(key.length, s.length) / 3)))
    .sort((a, b) => a.d - b.d)[0];
  if (close) return `unknown key; did you mean ${JSON.stringify(where ? `${where}.${close.s}` : close.s)}?`;
  // The right key in the wrong table, e.g. `level` under [grpc] instead of [log].
  const elsewhere = allKeys(configSchema, "").filter((p) => p.split(".").pop() === key);
  if (elsewhere.length > 0) return `unknown key; did you mean ${elsewhere.map((p) => JSON.stringify(p)).join(" or ")}?`;
  return `unknown key (known keys here: ${siblings.join(", ")})`;
}

/** Validates `raw` against `spec`, merging into `base` (the defaults); collects problems. */
function merge(spec: AnySpec, raw: unknown, base: unknown, key: string, problems: ConfigProblem[]): unknown {
  if (spec.kind === "field") {
    const r = (spec as FieldSpec<unknown>).parse(raw);
    if (r.ok) return r.value;
    problems.push({ key, problem: r.problem });
    return base;
  }
  if (!isTable(raw)) {
    problems.push({ key, problem: `expected a table, got ${describeValue(raw)}` });
    return base;
  }
  const out: Json = { ...(base as Json) };
  if (spec.kind === "section") {
    const fields = (spec as SectionSpec<Fields>).fields;
    for (const [k, v] of Object.entries(raw)) {
      const path = key ? `${key}.${k}` : k;
      const child = Object.hasOwn(fields, k) ? fields[k] : undefined;
      if (!child) problems.push({ key: path, problem: unknownKeyProblem(k, key, Object.keys(fields)) });
      else out[k] = merge(child, v, out[k], path, problems);
    }
    return out;
  }
  const map = spec as MapSpec<SectionSpec<Fields>>;
  for (const [name, v] of Object.entries(raw)) {
    const entryBase = Object.hasOwn(out, name) ? out[name] : defaultsOf(map.entry);
    out[name] = merge(map.entry, v, entryBase, `${key}.${name}`, problems);
  }
  return out;
}

function checkAcross(cfg: BerthConfig, source: string): void {
  const problems = crossChecks.map((c) => c(cfg)).filter((p): p is ConfigProblem => p !== undefined);
  if (problems.length > 0) throw new ConfigError(source, problems);
}

/** Parses and validates a TOML document on top of the defaults. `source` names it in errors. */
export function parseConfig(text: string, source: string): BerthConfig {
  let doc: Json;
  try {
    doc = parseToml(text) as Json;
  } catch (err) {
    if (err instanceof TomlError) {
      const [summary, ...excerpt] = err.message.replace(/^Invalid TOML document: /, "").split("\n");
      throw new ConfigError(
        `${source}:${err.line}:${err.column}`,
        [{ key: "", problem: `TOML syntax error: ${summary}` }],
        excerpt.join("\n").trim(),
      );
    }
    throw err;
  }
  const problems: ConfigProblem[] = [];
  const cfg = merge(configSchema, doc, defaultConfig(), "", problems) as BerthConfig;
  if (problems.length > 0) throw new ConfigError(source, problems);
  checkAcross(cfg, source);
  return cfg;
}

/**
 * Reads the config file. Without an explicit path, DEFAULT_CONFIG_PATH is used if it exists
 * and the defaults otherwise; an explicit path that cannot be read is an error.
 */
export function loadConfigFile(file: string | undefined): { config: BerthConfig; source: string | undefined } {
  const path = file ?? DEFAULT_CONFIG_PATH;
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (file === undefined && code === "ENOENT") return { config: defaultConfig(), source: undefined };
    throw new ConfigError(path, [{ key: "", problem: `cannot read config file: ${code ?? (err as Error).message}` }]);
  }
  return { config: parseConfig(text, path), source: path };
}

/** A value given on the command line for a config key, e.g. --address for grpc.address. */
export interface Override {
  key: string;
  value: unknown;
  /** How the user wrote it, for messages: "--address". */
  flag: string;
}

/** Applies command-line overrides, validated by the same schema as the file. */
export function applyOverrides(cfg: BerthConfig, overrides: Override[]): BerthConfig {
  const out = structuredClone(cfg);
  const problems: ConfigProblem[] = [];
  for (const o of overrides) {
    const parts = o.key.split(".");
    let spec: AnySpec = configSchema;
    let target = out as unknown as Json;
    for (const [i, part] of parts.entries()) {
      if (spec.kind !== "section" || !Object.hasOwn(spec.fields, part)) throw new Error(`no config key ${o.key}`);
      spec = spec.fields[part];
      if (i < parts.length - 1) target = target[part] as Json;
    }
    if (spec.kind !== "field") throw new Error(`config key ${o.key} is a table`);
    const r = (spec as FieldSpec<unknown>).parse(o.value);
    if (r.ok) target[parts[parts.length - 1]] = r.value;
    else problems.push({ key: `${o.flag} (${o.key})`, problem: r.problem });
  }
  if (problems.length > 0) throw new ConfigError("command line", problems);
  checkAcross(out, "command line");
  return out;
}

// ---- printing ----

function tomlKey(k: string): string {
  return /^[A-Za-z0-9_-]+$/.test(k) ? k : JSON.stringify(k);
}

function tomlValue(v: TomlValue): string {
  if (typeof v === "string") {
    // JSON string syntax is TOML basic-string syntax, except that TOML also forbids a raw DEL.
    return JSON.stringify(v).replace(/\x7f/g, "\\u007F");
  }
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  if (Array.isArray(v)) return `[${v.map(tomlValue).join(", ")}]`;
  const entries = Object.entries(v);
  return entries.length === 0 ? "{}" : `{ ${entries.map(([k, x]) => `${tomlKey(k)} = ${tomlValue(x)}`).join(", ")} }`;
}

function comment(text: string): string {
  return `# ${text}\n`;
}

function renderSection(spec: SectionSpec<Fields>, value: Json, header: string, withComments: boolean): string {
  let out = "";
  let nested = "";
  for (const [k, child] of Object.entries(spec.fields)) {
    const path = header ? `${header}.${tomlKey(k)}` : tomlKey(k);
    if (child.kind === "field") {
      if (withComments) out += comment(child.description);
      out += `${tomlKey(k)} = ${tomlValue((child as FieldSpec<unknown>).render(value[k]))}\n`;
    } else if (child.kind === "section") {
      nested += `\n${withComments ? comment(child.description) : ""}[${path}]\n`;
      nested += renderSection(child as SectionSpec<Fields>, value[k] as Json, path, withComments);
    } else {
      const map = child as MapSpec<SectionSpec<Fields>>;
      if (withComments) nested += `\n${comment(`[${path}.<name>]: ${map.description}`)}`;
      for (const [name, entry] of Object.entries(value[k] as Json)) {
        const entryPath = `${path}.${tomlKey(name)}`;
        nested += `\n[${entryPath}]\n${renderSection(map.entry, entry as Json, entryPath, withComments)}`;
      }
    }
  }
  // Plain keys must come before any [table] header, or TOML would put them inside that table.
  return out + nested;
}

/** The configuration as TOML that parseConfig reads back to the same value; with comments from the schema. */
export function renderConfig(cfg: BerthConfig, opts: { comments?: boolean } = {}): string {
  const head = opts.comments ? comment("berthd configuration. Every key is shown with its default value.") : "";
  return head + renderSection(configSchema, cfg as unknown as Json, "", opts.comments ?? false);
}
