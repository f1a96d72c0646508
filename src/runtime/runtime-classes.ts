// Runtime handlers: a CRI RuntimeClass handler name mapped to a shim v2 runtime type and the
// OCI runtime that shim drives. This is the registry-by-name extension point of DESIGN.md
// principle 6; the daemon builds it from [runtime.handlers.<name>] in the config.
import { accessSync, constants, statSync } from "node:fs";
import { delimiter, dirname, isAbsolute, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { Options as RuncOptions } from "../gen/containerd/runc/options/oci.js";
import type { Any } from "../gen/google/protobuf/any.js";
import { InvalidArgumentError, NotFoundError } from "../util/errors.js";

export const BERTH_RUNTIME_TYPE = "io.containerd.berth.v2";
export const RUNC_RUNTIME_TYPE = "io.containerd.runc.v2";

/**
 * The type URL containerd's CRI plugin gives runc Options (typeurl uses the bare protobuf
 * message name). containerd-shim-runc-v2 looks the Any up by this name.
 */
export const RUNC_OPTIONS_TYPE_URL = "containerd.runc.v1.Options";

export interface RuntimeHandlerConfig {
  /** Shim v2 runtime type, `io.containerd.NAME.v2` (default io.containerd.berth.v2). */
  runtimeType?: string;
  /** OCI runtime binary the shim runs: a name on PATH or an absolute path (default "runc"). */
  binaryName?: string;
  /** OCI runtime state root (its --root); the shim appends the namespace. Empty: the shim's default. */
  root?: string;
  /**
   * Extra runc Options fields (containerd.runc.v1.Options), in snake_case as in the TOML
   * config or camelCase: no_pivot_root, no_new_keyring, shim_cgroup, io_uid, io_gid,
   * criu_path, systemd_cgroup, criu_image_path, criu_work_path.
   */
  options?: Record<string, unknown>;
}

/** A resolved runtime handler. */
export interface RuntimeHandler {
  name: string;
  runtimeType: string;
  binaryName: string;
  root: string;
  /** The options sent to the shim on `start` (stdin) and `Create`, as containerd does. */
  runcOptions: RuncOptions;
  /**
   * True for berth's own shim: its container monitors outlive the serving process, so when
   * the shim is gone the manager runs `start` again and the new shim re-adopts the
   * containers instead of them being reported dead.
   */
  restartableShim: boolean;
}

const optionFields: Record<string, { field: keyof RuncOptions; kind: "boolean" | "string" | "number" }> = {
  no_pivot_root: { field: "noPivotRoot", kind: "boolean" },
  no_new_keyring: { field: "noNewKeyring", kind: "boolean" },
  shim_cgroup: { field: "shimCgroup", kind: "string" },
  io_uid: { field: "ioUid", kind: "number" },
  io_gid: { field: "ioGid", kind: "number" },
  criu_path: { field: "criuPath", kind: "string" },
  systemd_cgroup: { field: "systemdCgroup", kind: "boolean" },
  criu_image_path: { field: "criuImagePath", kind: "string" },
  criu_work_path: { field: "criuWorkPath", kind: "string" },
};

function snake(key: string): string {
  return key.replace(/^[A-Z]/, (c) => c.toLowerCase()).replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/** The shim executable's name for a runtime type: io.containerd.NAME.v2 -> containerd-shim-NAME-v2. */
export function shimBinaryName(runtimeType: string): string {
  // containerd takes the last two dot-separated parts (runtime/v2/shim/util.go BinaryName).
  const parts = runtimeType.split(".");
  const name = parts[parts.length - 2];
  const version = parts[parts.length - 1];
  if (parts.length < 2 || !name || !version || !/^[A-Za-z0-9_-]+$/.test(name + version)) {
    throw new InvalidArgumentError(
      `runtime type ${JSON.stringify(runtimeType)} is not of the form io.containerd.NAME.v2 (nor an absolute path to a shim binary)`,
    );
  }
  return `containerd-shim-${name}-${version}`;
}

/** The berth repository's bin/ directory (this file is src/runtime/ or dist/src/runtime/). */
export function repoBinDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const candidate = join(dir, "bin");
    try {
      if (statSync(join(dir, "package.json")).isFile() && statSync(candidate).isDirectory()) return candidate;
    } catch {
      // keep walking up
    }
    dir = dirname(dir);
  }
  return resolve(dirname(fileURLToPath(import.meta.url)), "../../../bin");
}

function isExecutable(path: string): boolean {
  try {
    if (!statSync(path).isFile()) return false;
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

export interface ShimLookupOptions {
  /** PATH-style list searched first (default process.env.PATH). */
  path?: string;
  /** Directories searched after PATH (default: the berth repository's bin/, so it works in place). */
  extraDirs?: string[];
}

/**
 * The absolute path of the shim for a runtime type (or the type itself when it is an
 * absolute path, as containerd allows). Throws NotFoundError naming where it looked.
 */
export function resolveShimBinary(runtimeType: string, opts: ShimLookupOptions = {}): string {
  if (isAbsolute(runtimeType)) {
    if (isExecutable(runtimeType)) return runtimeType;
    throw new NotFoundError(`shim binary ${runtimeType} does not exist or is not executable`);
  }
  const name = shimBinaryName(runtimeType);
  const onPath = (opts.path ?? process.env.PATH ?? "").split(delimiter).filter(Boolean);
  const own = opts.extraDirs ?? [repoBinDir()];
  // berth's own shim comes from berthd's own installation first, so daemon and shim always
  // match (an older checkout's shim on PATH must not serve this daemon); others from PATH.
  const dirs = runtimeType === BERTH_RUNTIME_TYPE ? [...own, ...onPath] : [...onPath, ...own];
  for (const dir of dirs) {
    const candidate = resolve(dir, name);
    if (isExecutable(candidate)) return candidate;
  }
  throw new NotFoundError(
    `runtime ${JSON.stringify(runtimeType)}: shim binary ${name} is not installed (looked in ${dirs.join(", ") || "nowhere"})`,
  );
}

/** Builds one handler from its config, checking every field. */
export function makeRuntimeHandler(name: string, cfg: RuntimeHandlerConfig = {}): RuntimeHandler {
  if (!name) throw new InvalidArgumentError("runtime handler name must not be empty");
  const runtimeType = cfg.runtimeType || BERTH_RUNTIME_TYPE;
  if (!isAbsolute(runtimeType)) shimBinaryName(runtimeType); // validates the form
  const binaryName = cfg.binaryName || "runc";
  const root = cfg.root ?? "";
  const runcOptions = RuncOptions.fromPartial({ binaryName, root });
  for (const [key, value] of Object.entries(cfg.options ?? {})) {
    const spec = optionFields[snake(key)];
    if (!spec) {
      throw new InvalidArgumentError(
        `runtime handler ${JSON.stringify(name)}: unknown option ${JSON.stringify(key)} (known: ${Object.keys(optionFields).join(", ")})`,
      );
    }
    if (typeof value !== spec.kind) {
      throw new InvalidArgumentError(
        `runtime handler ${JSON.stringify(name)}: option ${key} must be a ${spec.kind}, not ${typeof value}`,
      );
    }
    (runcOptions as unknown as Record<string, unknown>)[spec.field] = value;
  }
  return { name, runtimeType, binaryName, root, runcOptions, restartableShim: runtimeType === BERTH_RUNTIME_TYPE };
}

/** The runc Options of a handler as the Any containerd sends (start's stdin and Create's options). */
export function runcOptionsAny(handler: RuntimeHandler): Any {
  return { typeUrl: RUNC_OPTIONS_TYPE_URL, value: Buffer.from(RuncOptions.encode(handler.runcOptions).finish()) };
}

/** The configured runtime classes: handlers by name, with a default for requests that name none (CRI's empty runtime_handler). */
export class RuntimeClasses {
  private readonly byName = new Map<string, RuntimeHandler>();

  constructor(
    handlers: Record<string, RuntimeHandlerConfig> | RuntimeHandler[],
    readonly defaultName: string,
  ) {
    const list = Array.isArray(handlers)
      ? handlers
      : Object.entries(handlers).map(([n, c]) => makeRuntimeHandler(n, c));
    for (const h of list) {
      if (this.byName.has(h.name))
        throw new InvalidArgumentError(`runtime handler ${JSON.stringify(h.name)} is defined twice`);
      this.byName.set(h.name, h);
    }
    if (!this.byName.has(defaultName)) {
      throw new InvalidArgumentError(
        `default runtime handler ${JSON.stringify(defaultName)} is not defined (have: ${this.names().join(", ") || "none"})`,
      );
    }
  }

  names(): string[] {
    return [...this.byName.keys()];
  }

  /** The handler for a name; "" (or undefined) means the default. Throws NotFoundError. */
  get(name: string | undefined): RuntimeHandler {
    const key = name || this.defaultName;
    const h = this.byName.get(key);
    if (!h) {
      throw new NotFoundError(
        `no runtime handler named ${JSON.stringify(key)} is configured (have: ${this.names().join(", ")})`,
      );
    }
    return h;
  }
}
