// The shim's command line, as containerd builds it (runtime/v2/shim/shim.go, Go's flag
// package): single- or double-dash flags, `-name value` or `-name=value`, boolean flags
// without a value, then the action (`start`, `delete`, or none for serving).
import { InvalidArgumentError } from "../util/errors.js";

export interface ShimFlags {
  namespace: string;
  address: string;
  publishBinary: string;
  id: string;
  bundle: string;
  socket: string;
  debug: boolean;
  version: boolean;
  /** Internal: this process is the serving shim of a group (spawned by `start`). */
  serve: boolean;
  action: string;
}

const stringFlags = new Map<string, keyof ShimFlags>([
  ["namespace", "namespace"],
  ["address", "address"],
  ["publish-binary", "publishBinary"],
  ["id", "id"],
  ["bundle", "bundle"],
  ["socket", "socket"],
]);
const boolFlags = new Map<string, keyof ShimFlags>([
  ["debug", "debug"],
  ["v", "version"],
  ["berth-serve", "serve"],
]);

export function parseFlags(argv: string[]): ShimFlags {
  const f: ShimFlags = {
    namespace: "",
    address: "",
    publishBinary: "",
    id: "",
    bundle: "",
    socket: "",
    debug: false,
    version: false,
    serve: false,
    action: "",
  };
  const rec = f as unknown as Record<string, string | boolean>;
  let i = 0;
  for (; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--") {
      i++;
      break;
    }
    if (!a.startsWith("-") || a === "-") break;
    const body = a.replace(/^--?/, "");
    const eq = body.indexOf("=");
    const name = eq >= 0 ? body.slice(0, eq) : body;
    const inline = eq >= 0 ? body.slice(eq + 1) : undefined;
    const s = stringFlags.get(name);
    if (s) {
      const v = inline ?? argv[++i];
      if (v === undefined) throw new InvalidArgumentError(`flag needs an argument: -${name}`);
      rec[s] = v;
      continue;
    }
    const b = boolFlags.get(name);
    if (b) {
      rec[b] = inline === undefined ? true : inline === "true" || inline === "1";
      continue;
    }
    throw new InvalidArgumentError(`flag provided but not defined: -${name}`);
  }
  f.action = argv[i] ?? "";
  return f;
}
