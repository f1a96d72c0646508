// The building blocks of berthd's configuration schema: one small spec per kind of value.
// Each spec knows its default, how to check and convert a raw TOML value, how to print the
// value back as TOML, and a one-line description (printed as a comment by `berthd config default`).
// The TypeScript type of the whole configuration is derived from the schema (ConfigValue),
// so adding a key is one line in config-schema.ts and nothing else.

/** A value as it appears in a parsed TOML document (smol-toml output without dates). */
export type TomlValue = string | number | boolean | TomlValue[] | { [key: string]: TomlValue };

export type ParseResult<T> = { ok: true; value: T } | { ok: false; problem: string };

export interface FieldSpec<T> {
  readonly kind: "field";
  /** For messages: "a string", "an integer", "one of ...". */
  readonly expected: string;
  readonly default: T;
  readonly description: string;
  /** Checks a raw value (from TOML or a command-line flag) and converts it. */
  parse(raw: unknown): ParseResult<T>;
  /** The TOML value that, parsed again, gives back `value`. */
  render(value: T): TomlValue;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- any spec, whatever its value type
export type AnySpec = FieldSpec<any> | SectionSpec<Fields> | MapSpec<SectionSpec<Fields>>;
export type Fields = { readonly [key: string]: AnySpec };

export interface SectionSpec<F extends Fields> {
  readonly kind: "section";
  readonly description: string;
  readonly fields: F;
}

/** A table of named entries that all share one layout, e.g. [runtime.handlers.<name>]. */
export interface MapSpec<S extends SectionSpec<Fields>> {
  readonly kind: "map";
  readonly description: string;
  readonly entry: S;
  /** Entries present by default; a file adds entries and overrides keys of these. */
  readonly defaults: { readonly [name: string]: Partial<ConfigValue<S>> };
}

/** The TypeScript type of the configuration value a spec describes. */
export type ConfigValue<S> =
  S extends FieldSpec<infer T>
    ? T
    : S extends SectionSpec<infer F>
      ? { -readonly [K in keyof F]: ConfigValue<F[K]> }
      : S extends MapSpec<infer E>
        ? Record<string, ConfigValue<E>>
        : never;

/** "a string (\"x\")", "an integer (5)": how a wrong value is named in messages. */
export function describeValue(raw: unknown): string {
  if (raw === null || raw === undefined) return "nothing";
  if (Array.isArray(raw)) return "an array";
  switch (typeof raw) {
    case "string":
      return `a string (${JSON.stringify(raw)})`;
    case "number":
      return Number.isInteger(raw) ? `an integer (${raw})` : `a float (${raw})`;
    case "bigint":
      return `an integer (${raw})`;
    case "boolean":
      return `a boolean (${raw})`;
    case "object":
      return raw instanceof Date || raw.constructor?.name === "TomlDate" ? "a date" : "a table";
    default:
      return typeof raw;
  }
}

function wrongType<T>(expected: string, raw: unknown): ParseResult<T> {
  return { ok: false, problem: `expected ${expected}, got ${describeValue(raw)}` };
}

export function section<F extends Fields>(description: string, fields: F): SectionSpec<F> {
  return { kind: "section", description, fields };
}

export function mapOf<S extends SectionSpec<Fields>>(
  description: string,
  entry: S,
  defaults: { [name: string]: Partial<ConfigValue<S>> },
): MapSpec<S> {
  return { kind: "map", description, entry, defaults };
}

interface StringOptions {
  /** Extra check on the string; returns a problem or undefined. */
  check?: (value: string) => string | undefined;
}

export function str(def: string, description: string, opts: StringOptions = {}): FieldSpec<string> {
  return {
    kind: "field",
    expected: "a string",
    default: def,
    description,
    parse(raw) {
      if (typeof raw !== "string") return wrongType("a string", raw);
      const problem = opts.check?.(raw);
      return problem ? { ok: false, problem } : { ok: true, value: raw };
    },
    render: (v) => v,
  };
}

/** A filesystem path; absolute unless empty is allowed and given. */
export function path(def: string, description: string, opts: { allowEmpty?: boolean } = {}): FieldSpec<string> {
  return str(def, description, {
    check(v) {
      if (v === "") return opts.allowEmpty ? undefined : "must not be empty";
      if (!v.startsWith("/")) return `must be an absolute path, got ${JSON.stringify(v)}`;
      if (v.includes("\0")) return "must not contain a NUL byte";
      return undefined;
    },
  });
}

export function int(def: number, description: string, opts: { min?: number; max?: number } = {}): FieldSpec<number> {
  const { min = 0, max = Number.MAX_SAFE_INTEGER } = opts;
  return {
    kind: "field",
    expected: "an integer",
    default: def,
    description,
    parse(raw) {
      if (typeof raw === "bigint" && raw >= BigInt(min) && raw <= BigInt(max)) return { ok: true, value: Number(raw) };
      // A numeric string is a typo worth refusing rather than guessing: TOML has real integers.
      if (typeof raw !== "number" || !Number.isInteger(raw)) return wrongType("an integer", raw);
      if (raw < min || raw > max) return { ok: false, problem: `must be between ${min} and ${max}, got ${raw}` };
      return { ok: true, value: raw };
    },
    render: (v) => v,
  };
}

export function bool(def: boolean, description: string): FieldSpec<boolean> {
  return {
    kind: "field",
    expected: "a boolean",
    default: def,
    description,
    parse: (raw) => (typeof raw === "boolean" ? { ok: true, value: raw } : wrongType("a boolean", raw)),
    render: (v) => v,
  };
}

export function oneOf<const V extends readonly string[]>(
  values: V,
  def: V[number],
  description: string,
): FieldSpec<V[number]> {
  const expected = `one of ${values.map((v) => JSON.stringify(v)).join(", ")}`;
  return {
    kind: "field",
    expected,
    default: def,
    description,
    parse(raw) {
      if (typeof raw !== "string") return wrongType(expected, raw);
      if (!values.includes(raw)) return { ok: false, problem: `${JSON.stringify(raw)} is not ${expected}` };
      return { ok: true, value: raw as V[number] };
    },
    render: (v) => v,
  };
}

const durationUnits: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Milliseconds in a Go-style duration ("1m", "1h30m", "500ms", "0"), or undefined if it is not one. */
export function parseDuration(text: string): number | undefined {
  if (text === "0") return 0;
  const re = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/y;
  let ms = 0;
  let matched = 0;
  while (re.lastIndex < text.length) {
    const m = re.exec(text);
    if (!m) return undefined;
    ms += Number(m[1]) * durationUnits[m[2]];
    matched++;
  }
  return matched > 0 ? ms : undefined;
}

/** A Go-style duration kept as its text (so dumps show what was written); read it with parseDuration. */
export function duration(def: string, description: string): FieldSpec<string> {
  return str(def, description, {
    check: (v) =>
      parseDuration(v) === undefined
        ? `${JSON.stringify(v)} is not a duration (examples: "30s", "1m", "1h30m")`
        : undefined,
  });
}

/**
 * Unix permission bits, written as a TOML octal integer (0o660) or an octal string ("0660").
 * A decimal integer such as 660 is almost always a mistaken octal, so anything above 0o777 is refused.
 */
export function fileMode(def: number, description: string): FieldSpec<number> {
  const expected = 'a file mode (0o660 or "0660")';
  return {
    kind: "field",
    expected,
    default: def,
    description,
    parse(raw) {
      let mode: number;
      if (typeof raw === "number" && Number.isInteger(raw)) mode = raw;
      else if (typeof raw === "string" && /^(0o?)?[0-7]{1,4}$/.test(raw)) mode = parseInt(raw.replace(/^0o/, ""), 8);
      else return wrongType(expected, raw);
      if (mode < 0 || mode > 0o777) {
        const hint = typeof raw === "number" ? ` (decimal ${raw}); write octal: 0o${raw} or "0${raw}"` : "";
        return { ok: false, problem: `permission bits must be within 0o777${hint}` };
      }
      return { ok: true, value: mode };
    },
    render: (v) => "0" + v.toString(8).padStart(3, "0"),
  };
}

/** A deep copy with ordinary prototypes (the TOML parser makes null-prototype tables). */
function plain(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(plain);
  if (typeof v === "object" && v !== null && describeValue(v) === "a table") {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  }
  return v;
}

/** A free-form table passed through to a component (e.g. runtime handler options). */
export function table(description: string): FieldSpec<Record<string, TomlValue>> {
  return {
    kind: "field",
    expected: "a table",
    default: {},
    description,
    parse(raw) {
      if (typeof raw !== "object" || raw === null || Array.isArray(raw) || describeValue(raw) !== "a table") {
        return wrongType("a table", raw);
      }
      return { ok: true, value: plain(raw) as Record<string, TomlValue> };
    },
    render: (v) => v,
  };
}

export function stringList(def: string[], description: string): FieldSpec<string[]> {
  return {
    kind: "field",
    expected: "an array of strings",
    default: def,
    description,
    parse(raw) {
      if (!Array.isArray(raw)) return wrongType("an array of strings", raw);
      const bad = raw.findIndex((x) => typeof x !== "string");
      if (bad >= 0) return { ok: false, problem: `element ${bad} is ${describeValue(raw[bad])}, expected a string` };
      return { ok: true, value: [...(raw as string[])] };
    },
    render: (v) => v,
  };
}
