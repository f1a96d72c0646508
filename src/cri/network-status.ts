// Whether pod networking can work, for the NetworkReady condition of CRI Status.
// kubelet keeps a node NotReady until this is true, so the message must say exactly what is
// missing. The check mirrors what a CNI ADD would need: the first `maxConfNum` network
// configs (by file name, the order libcni uses) parse, and every plugin they name exists as
// an executable in the bin dir. The network layer may later supply a probe backed by its
// loaded CNI state instead; Status only depends on the NetworkStatusProbe interface.

import { access, constants, readdir, readFile } from "node:fs/promises";
import { join } from "node:path";

export interface NetworkStatus {
  ready: boolean;
  /** CamelCase reason for a false status, "" when ready. */
  reason: string;
  message: string;
}

export interface NetworkStatusProbe {
  status(): Promise<NetworkStatus>;
}

export interface CniLocations {
  confDir: string;
  binDir: string;
  maxConfNum: number;
}

const NOT_READY = "NetworkPluginNotReady";
const CONF_EXTENSIONS = [".conf", ".conflist", ".json"];

/** The plugin binaries (main and IPAM) a CNI network config names, or a problem with the file. */
function pluginTypes(text: string): string[] | string {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    return `invalid JSON (${(err as Error).message})`;
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) return "not a JSON object";
  const d = doc as { type?: unknown; plugins?: unknown };
  // A .conflist has "plugins"; a single .conf is itself the one plugin.
  const plugins: unknown[] = Array.isArray(d.plugins) ? d.plugins : d.plugins === undefined ? [doc] : [];
  if (plugins.length === 0) return '"plugins" is empty or not a list';
  const types: string[] = [];
  for (const p of plugins) {
    const { type, ipam } = (p ?? {}) as { type?: unknown; ipam?: { type?: unknown } };
    if (typeof type !== "string" || type === "") return 'a plugin has no "type"';
    types.push(type);
    if (typeof ipam?.type === "string" && ipam.type !== "") types.push(ipam.type);
  }
  return [...new Set(types)];
}

async function isExecutable(path: string): Promise<boolean> {
  try {
    await access(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** A probe that reads the CNI config and bin directories on every call (cheap; kubelet polls Status every few seconds). */
export function cniConfigProbe(loc: CniLocations): NetworkStatusProbe {
  return {
    async status() {
      let files: string[];
      try {
        files = (await readdir(loc.confDir)).filter((f) => CONF_EXTENSIONS.some((e) => f.endsWith(e))).sort();
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        return {
          ready: false,
          reason: NOT_READY,
          message: `cni config uninitialized: cannot read ${loc.confDir} (${code})`,
        };
      }
      if (files.length === 0) {
        return {
          ready: false,
          reason: NOT_READY,
          message: `cni config uninitialized: no network config (.conf, .conflist, .json) in ${loc.confDir}`,
        };
      }
      const problems: string[] = [];
      for (const file of files.slice(0, loc.maxConfNum)) {
        const path = join(loc.confDir, file);
        let parsed: ReturnType<typeof pluginTypes>;
        try {
          parsed = pluginTypes(await readFile(path, "utf8"));
        } catch (err) {
          parsed = `unreadable (${(err as NodeJS.ErrnoException).code})`;
        }
        if (typeof parsed === "string") {
          problems.push(`${path}: ${parsed}`);
          continue;
        }
        const missing: string[] = [];
        for (const t of parsed) if (!(await isExecutable(join(loc.binDir, t)))) missing.push(t);
        if (missing.length > 0) {
          problems.push(`${path}: CNI plugin ${missing.join(", ")} not found in ${loc.binDir}`);
        }
      }
      if (problems.length > 0) {
        return { ready: false, reason: NOT_READY, message: `cni plugin not initialized: ${problems.join("; ")}` };
      }
      return { ready: true, reason: "", message: "" };
    },
  };
}
