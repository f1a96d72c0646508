// Loading network configuration lists from conf_dir (the first few, by file name, as
// libcni's ConfFiles does), validating them and picking a cniVersion berth can read.

import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";

import { CniConfigError } from "./errors.js";
import type { CniNetworkConfigList, CniPluginConf } from "./types.js";

/** Result formats this runtime can read (0.1/0.2 used a different `ip4`/`ip6` layout). */
const READABLE_VERSIONS = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

function parseVersion(v: string): [number, number, number] | undefined {
  const m = /^(\d+)\.(\d+)\.(\d+)$/.exec(v);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : undefined;
}

/** Compares two "x.y.z" versions; an unparsable one sorts first. */
export function compareVersions(a: string, b: string): number {
  const pa = parseVersion(a) ?? [0, 0, 0];
  const pb = parseVersion(b) ?? [0, 0, 0];
  for (let i = 0; i < 3; i++) if (pa[i] !== pb[i]) return pa[i] - pb[i];
  return 0;
}

// ---------------------------------------------------------------------------------------
// Loading and validating configuration

const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;
const CONFIG_EXTENSIONS = [".conflist", ".conf", ".json"];

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function checkPlugin(file: string, p: unknown, where: string): CniPluginConf {
  if (!isObject(p)) throw new CniConfigError(file, `${where} is not a JSON object`);
  if (typeof p.type !== "string" || p.type === "") throw new CniConfigError(file, `${where} has no "type"`);
  if (p.type.includes("/") || p.type === "." || p.type === "..") {
    throw new CniConfigError(file, `${where} has an invalid type ${JSON.stringify(p.type)} (a plugin file name)`);
  }
  if (p.capabilities !== undefined && !isObject(p.capabilities)) {
    throw new CniConfigError(file, `${where} "capabilities" must be an object`);
  }
  if (p.ipam !== undefined) {
    if (!isObject(p.ipam)) throw new CniConfigError(file, `${where} "ipam" must be an object`);
    const t = p.ipam.type;
    if (t !== undefined && (typeof t !== "string" || t === "" || t.includes("/"))) {
      throw new CniConfigError(file, `${where} has an invalid ipam type ${JSON.stringify(t)}`);
    }
  }
  return p as CniPluginConf;
}

function pickVersion(file: string, obj: Record<string, unknown>): string {
  let version = obj.cniVersion;
  // CNI 1.1.0 lists may carry `cniVersions` instead: take the newest we can read.
  if (version === undefined && Array.isArray(obj.cniVersions)) {
    const readable = obj.cniVersions.filter((v): v is string => typeof v === "string" && READABLE_VERSIONS.includes(v));
    version = readable.sort(compareVersions).pop();
    if (version === undefined) {
      throw new CniConfigError(
        file,
        `none of cniVersions ${JSON.stringify(obj.cniVersions)} is supported (supported: ${READABLE_VERSIONS.join(", ")})`,
      );
    }
  }
  if (typeof version !== "string" || version === "") throw new CniConfigError(file, `missing "cniVersion"`);
  if (!parseVersion(version))
    throw new CniConfigError(file, `cniVersion ${JSON.stringify(version)} is not of the form X.Y.Z`);
  if (compareVersions(version, "0.3.0") < 0) {
    throw new CniConfigError(file, `cniVersion ${version} is not supported (berth reads results of 0.3.0 and newer)`);
  }
  return version;
}

/**
 * Parses and validates one config file's text. A file with `plugins` is a list; otherwise
 * it is a single plugin config and is wrapped into a one-plugin list, as libcni does.
 */
export function parseNetworkConfig(text: string, file: string): CniNetworkConfigList {
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch (err) {
    throw new CniConfigError(file, `invalid JSON: ${(err as Error).message}`);
  }
  if (!isObject(obj)) throw new CniConfigError(file, "not a JSON object");
  if (typeof obj.name !== "string" || obj.name === "") throw new CniConfigError(file, `missing "name"`);
  if (!NAME_RE.test(obj.name)) {
    throw new CniConfigError(
      file,
      `name ${JSON.stringify(obj.name)} must start with a letter or digit and contain only letters, digits, "_", "." and "-"`,
    );
  }
  const cniVersion = pickVersion(file, obj);
  const isList = file.endsWith(".conflist") || obj.plugins !== undefined;
  let plugins: CniPluginConf[];
  if (isList) {
    if (!Array.isArray(obj.plugins)) throw new CniConfigError(file, `"plugins" must be an array of plugin configs`);
    if (obj.plugins.length === 0) throw new CniConfigError(file, `"plugins" is empty`);
    plugins = obj.plugins.map((p, i) => checkPlugin(file, p, `plugins[${i}]`));
  } else {
    const single = { ...obj };
    delete single.name;
    delete single.cniVersion;
    plugins = [checkPlugin(file, single, "the plugin config")];
  }
  const disableCheck = obj.disableCheck === true || obj.disableCheck === "true";
  return { cniVersion, name: obj.name, disableCheck, plugins, source: file };
}

/** Config file names in conf_dir in the order libcni uses: lexical. */
export async function listConfigFiles(confDir: string): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(confDir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
  return names
    .filter((n) => !n.startsWith(".") && CONFIG_EXTENSIONS.some((e) => n.endsWith(e)))
    .sort()
    .map((n) => join(confDir, n));
}

/**
 * The first `max` network configs of conf_dir (lexical file order); [] when there are none.
 * A broken file among them is an error, not silently skipped: the node would otherwise
 * quietly run pods on a different network than the administrator wrote.
 */
export async function loadNetworkConfigs(confDir: string, max = 1): Promise<CniNetworkConfigList[]> {
  const files = (await listConfigFiles(confDir)).slice(0, max);
  const lists: CniNetworkConfigList[] = [];
  for (const file of files) {
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch (err) {
      throw new CniConfigError(file, `cannot read: ${(err as Error).message}`);
    }
    lists.push(parseNetworkConfig(text, file));
  }
  return lists;
}
