// CNI (containernetworking/cni SPEC.md) from the runtime's side: loading network
// configuration lists, writing berth's default one, and executing plugin lists for ADD,
// CHECK and DEL. A plugin is an executable found on CNI_PATH by its `type`; it gets the
// command in its environment and its network config on stdin, and answers a result (or
// an error object) as JSON on stdout.

import { spawn } from "node:child_process";
import { constants as fsConstants } from "node:fs";
import { access, mkdir, readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { writeFileAtomic } from "../util/atomic-write.js";
import { DeadlineExceededError, FailedPreconditionError, InternalError } from "../util/errors.js";

// ---------------------------------------------------------------------------------------
// Types

/** One plugin's entry in a configuration list; everything but `type` is the plugin's business. */
export interface CniPluginConf {
  type: string;
  capabilities?: Record<string, boolean>;
  ipam?: { type?: string; [key: string]: unknown };
  [key: string]: unknown;
}

/** A network configuration list, as loaded (a single-plugin .conf is wrapped into one). */
export interface CniNetworkConfigList {
  cniVersion: string;
  name: string;
  disableCheck: boolean;
  plugins: CniPluginConf[];
  /** The file it came from, "" when built in code. */
  source: string;
}

export interface CniInterface {
  name: string;
  mac?: string;
  mtu?: number;
  /** set for interfaces inside the sandbox: the netns path */
  sandbox?: string;
}

export interface CniIPConfig {
  /** CIDR notation: "10.85.0.7/16" */
  address: string;
  gateway?: string;
  /** index into `interfaces` */
  interface?: number;
  /** "4" or "6"; present in results before CNI 1.0.0 */
  version?: string;
}

export interface CniRoute {
  dst: string;
  gw?: string;
}

export interface CniDNS {
  nameservers?: string[];
  domain?: string;
  search?: string[];
  options?: string[];
}

/** A plugin's (and so a list's) result. Unknown fields are kept, they are passed on as prevResult. */
export interface CniResult {
  cniVersion: string;
  interfaces?: CniInterface[];
  ips?: CniIPConfig[];
  routes?: CniRoute[];
  dns?: CniDNS;
  [key: string]: unknown;
}

/** The `portMappings` capability (CNI CONVENTIONS.md), consumed by the portmap plugin. */
export interface PortMapping {
  hostPort: number;
  containerPort: number;
  protocol: "tcp" | "udp" | "sctp";
  /** empty or missing: all host addresses */
  hostIP?: string;
}

/** The `bandwidth` capability, in bits per second and bits (consumed by the bandwidth plugin). */
export interface BandwidthLimits {
  ingressRate?: number;
  ingressBurst?: number;
  egressRate?: number;
  egressBurst?: number;
}

/** The `dns` capability. */
export interface DnsCapability {
  servers?: string[];
  searches?: string[];
  options?: string[];
}

/** Per-invocation facts, the same for every plugin of a list (SPEC: "the same environment"). */
export interface RuntimeConf {
  containerId: string;
  /** path of the pinned network namespace */
  netns: string;
  ifName: string;
  /** CNI_ARGS as ordered key/value pairs */
  args: [string, string][];
  /** values for capabilities: a plugin gets runtimeConfig[k] only when it lists capability k */
  capabilityArgs: {
    portMappings?: PortMapping[];
    bandwidth?: BandwidthLimits;
    dns?: DnsCapability;
    [key: string]: unknown;
  };
}

export type CniCommand = "ADD" | "DEL" | "CHECK" | "VERSION";

// ---------------------------------------------------------------------------------------
// Errors

/** The network configuration (a file in conf_dir) is unusable. */
export class CniConfigError extends FailedPreconditionError {
  constructor(
    readonly file: string,
    problem: string,
  ) {
    super(`CNI network config ${file || "(built-in)"}: ${problem}`);
  }
}

/** A plugin named by a config is not in any CNI bin dir. */
export class CniPluginNotFoundError extends FailedPreconditionError {
  constructor(
    readonly plugin: string,
    readonly binDirs: string[],
  ) {
    super(`CNI plugin ${JSON.stringify(plugin)} not found in ${binDirs.join(":")}`);
  }
}

/** A plugin ran and failed: the SPEC's error object ({code, msg, details}) plus where it happened. */
export class CniPluginError extends InternalError {
  constructor(
    readonly plugin: string,
    readonly command: CniCommand,
    readonly network: string,
    /** the SPEC's well-known code (1-99) or a plugin-specific one (100+); 0 if the plugin printed no error object */
    readonly cniCode: number,
    readonly cniMsg: string,
    readonly details: string,
  ) {
    super(
      `CNI plugin ${plugin} ${command} failed for network ${JSON.stringify(network)}` +
        `${cniCode ? ` (code ${cniCode})` : ""}: ${cniMsg}${details ? `: ${details}` : ""}`,
    );
  }
}

/** A plugin ran past its time limit and was killed. */
export class CniPluginTimeoutError extends DeadlineExceededError {
  constructor(
    readonly plugin: string,
    readonly command: CniCommand,
    readonly timeoutMs: number,
  ) {
    super(`CNI plugin ${plugin} ${command} did not finish within ${timeoutMs} ms and was killed`);
  }
}

/** SPEC well-known error codes the runtime acts on. */
export const CNI_ERR_INCOMPATIBLE_VERSION = 1;
export const CNI_ERR_UNKNOWN_CONTAINER = 3;
export const CNI_ERR_TRY_AGAIN_LATER = 11;

// ---------------------------------------------------------------------------------------
// Versions

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

function isObject(v: unknown): v is Record<string, unknown> {
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

// ---------------------------------------------------------------------------------------
// The default network

export interface DefaultNetworkOptions {
  /** network name; default "berth-default" */
  name?: string;
  /** Linux bridge; default "berth0" */
  bridge?: string;
  /** IPv4 pod subnet; default 10.85.0.0/16 (clear of podman/CRI-O 10.88, k8s services 10.96/12, flannel 10.244, k3s 10.42-43, docker 172.17) */
  subnet?: string;
  /** host-local's allocation directory; default the plugin's own /var/lib/cni/networks */
  dataDir?: string;
  /** config file name in conf_dir; default "10-berth-default.conflist" */
  fileName?: string;
}

export const DEFAULT_NETWORK_NAME = "berth-default";
export const DEFAULT_BRIDGE = "berth0";
export const DEFAULT_SUBNET = "10.85.0.0/16";
export const DEFAULT_CONFIG_FILE = "10-berth-default.conflist";

/** The plugins the default network runs; their binaries must exist for it to work. */
export const DEFAULT_NETWORK_PLUGINS = ["bridge", "host-local", "portmap", "loopback"];

/** Builds the default configuration list (a bridge with NAT to the outside, plus hostPort mapping). */
export function defaultNetworkConfig(cniVersion: string, opts: DefaultNetworkOptions = {}): Record<string, unknown> {
  const ipam: Record<string, unknown> = {
    type: "host-local",
    ranges: [[{ subnet: opts.subnet ?? DEFAULT_SUBNET }]],
    routes: [{ dst: "0.0.0.0/0" }],
  };
  if (opts.dataDir) ipam.dataDir = opts.dataDir;
  return {
    cniVersion,
    name: opts.name ?? DEFAULT_NETWORK_NAME,
    plugins: [
      {
        type: "bridge",
        bridge: opts.bridge ?? DEFAULT_BRIDGE,
        isGateway: true,
        ipMasq: true,
        hairpinMode: true,
        ipam,
      },
      { type: "portmap", capabilities: { portMappings: true } },
    ],
  };
}

/**
 * Writes the default config list into conf_dir, with the newest cniVersion that every
 * plugin it uses supports, and returns the loaded list.
 */
export async function writeDefaultNetworkConfig(
  confDir: string,
  exec: CniExec,
  opts: DefaultNetworkOptions = {},
): Promise<CniNetworkConfigList> {
  const version = await exec.commonVersion(DEFAULT_NETWORK_PLUGINS, ["1.0.0", "0.4.0"]);
  const conf = defaultNetworkConfig(version, opts);
  const text = JSON.stringify(conf, null, 2) + "\n";
  const file = join(confDir, opts.fileName ?? DEFAULT_CONFIG_FILE);
  await mkdir(confDir, { recursive: true, mode: 0o755 });
  await writeFileAtomic(file, text);
  return parseNetworkConfig(text, file);
}

// ---------------------------------------------------------------------------------------
// Executing plugins

export interface CniExecOptions {
  /** directories searched for plugin binaries, in order; also passed as CNI_PATH */
  binDirs: string[];
  /** per plugin invocation; default 60 s */
  timeoutMs?: number;
}

export interface PluginRun {
  plugin: string;
  command: CniCommand;
  network: string;
  env: Record<string, string>;
  stdin: string;
}

/** Runs plugin binaries. One instance per bin-dir set; it holds no per-pod state. */
export class CniExec {
  readonly binDirs: string[];
  readonly timeoutMs: number;

  constructor(opts: CniExecOptions) {
    this.binDirs = opts.binDirs;
    this.timeoutMs = opts.timeoutMs ?? 60_000;
  }

  /** The executable for plugin `type`, or undefined when no bin dir has it. */
  async find(type: string): Promise<string | undefined> {
    for (const dir of this.binDirs) {
      const p = join(dir, type);
      try {
        await access(p, fsConstants.X_OK);
        return p;
      } catch {
        // try the next directory
      }
    }
    return undefined;
  }

  /** Plugin types (including IPAM types) named by the lists whose binaries are missing. */
  async missingPlugins(lists: CniNetworkConfigList[], extra: string[] = []): Promise<string[]> {
    const types = new Set(extra);
    for (const l of lists) {
      for (const p of l.plugins) {
        types.add(p.type);
        if (typeof p.ipam?.type === "string") types.add(p.ipam.type);
      }
    }
    const missing: string[] = [];
    for (const t of types) if (!(await this.find(t))) missing.push(t);
    return missing;
  }

  /** Asks a plugin which spec versions it supports (the VERSION command). */
  async versions(type: string): Promise<string[]> {
    const out = await this.run({
      plugin: type,
      command: "VERSION",
      network: "",
      env: { CNI_COMMAND: "VERSION" },
      stdin: JSON.stringify({ cniVersion: "1.0.0" }),
    });
    const parsed = out as { supportedVersions?: unknown };
    if (!Array.isArray(parsed.supportedVersions)) {
      throw new CniPluginError(
        type,
        "VERSION",
        "",
        0,
        "no supportedVersions in the VERSION answer",
        JSON.stringify(out),
      );
    }
    return parsed.supportedVersions.filter((v): v is string => typeof v === "string");
  }

  /** The first of `preferred` that every plugin in `types` supports. */
  async commonVersion(types: string[], preferred: string[]): Promise<string> {
    const supported = await Promise.all(types.map((t) => this.versions(t)));
    const v = preferred.find((p) => supported.every((s) => s.includes(p)));
    if (!v) {
      throw new FailedPreconditionError(
        `CNI plugins ${types.join(", ")} in ${this.binDirs.join(":")} share none of the versions ${preferred.join(", ")}`,
      );
    }
    return v;
  }

  /** Runs one plugin; resolves to its parsed stdout (undefined when it printed nothing). */
  async run(r: PluginRun): Promise<unknown> {
    const bin = await this.find(r.plugin);
    if (!bin) throw new CniPluginNotFoundError(r.plugin, this.binDirs);
    // Plugins inherit our environment: portmap and bridge run iptables, found on PATH.
    const env = { ...process.env, ...r.env, CNI_PATH: this.binDirs.join(":") };
    const { code, stdout, stderr, timedOut } = await new Promise<{
      code: number | null;
      stdout: string;
      stderr: string;
      timedOut: boolean;
    }>((resolve, reject) => {
      // Its own process group, so a timeout also kills what it started (iptables, IPAM plugins).
      const child = spawn(bin, [], { env, stdio: ["pipe", "pipe", "pipe"], detached: true });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      const timer = setTimeout(() => {
        try {
          if (child.pid) process.kill(-child.pid, "SIGKILL");
        } catch {
          child.kill("SIGKILL");
        }
        // Do not wait for "close": a grandchild that escaped the group could hold stdout open.
        child.stdout.destroy();
        child.stderr.destroy();
        resolve({ code: null, stdout: "", stderr: "", timedOut: true });
      }, this.timeoutMs);
      child.stdout.on("data", (b: Buffer) => out.push(b));
      child.stderr.on("data", (b: Buffer) => err.push(b));
      child.on("error", (e) => {
        clearTimeout(timer);
        reject(new CniPluginError(r.plugin, r.command, r.network, 0, `cannot execute ${bin}: ${e.message}`, ""));
      });
      child.on("close", (code) => {
        clearTimeout(timer);
        resolve({
          code,
          stdout: Buffer.concat(out).toString("utf8"),
          stderr: Buffer.concat(err).toString("utf8"),
          timedOut: false,
        });
      });
      // A plugin that exits without reading stdin gives EPIPE here; its exit status tells the story.
      child.stdin.on("error", () => undefined);
      child.stdin.end(r.stdin);
    });
    if (timedOut) throw new CniPluginTimeoutError(r.plugin, r.command, this.timeoutMs);
    if (code !== 0) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(stdout);
      } catch {
        parsed = undefined;
      }
      if (isObject(parsed) && (typeof parsed.msg === "string" || typeof parsed.code === "number")) {
        throw new CniPluginError(
          r.plugin,
          r.command,
          r.network,
          typeof parsed.code === "number" ? parsed.code : 0,
          typeof parsed.msg === "string" ? parsed.msg : "",
          typeof parsed.details === "string" ? parsed.details : "",
        );
      }
      const text = (stdout.trim() || stderr.trim() || "(no output)").slice(0, 2000);
      throw new CniPluginError(
        r.plugin,
        r.command,
        r.network,
        0,
        `exited with ${code === null ? "a signal" : `status ${code}`}: ${text}`,
        "",
      );
    }
    if (stdout.trim() === "") return undefined;
    try {
      return JSON.parse(stdout);
    } catch (err) {
      throw new CniPluginError(
        r.plugin,
        r.command,
        r.network,
        0,
        `printed invalid JSON: ${(err as Error).message}`,
        stdout.slice(0, 2000),
      );
    }
  }
}

// ---------------------------------------------------------------------------------------
// Running lists

function cniArgs(args: [string, string][]): string {
  return args.map(([k, v]) => `${k}=${v}`).join(";");
}

function envFor(command: CniCommand, rt: RuntimeConf): Record<string, string> {
  return {
    CNI_COMMAND: command,
    CNI_CONTAINERID: rt.containerId,
    CNI_NETNS: rt.netns,
    CNI_IFNAME: rt.ifName,
    CNI_ARGS: cniArgs(rt.args),
  };
}

/** The stdin of one plugin: its config with the list's name and version, capabilities filled in. */
export function pluginStdin(
  list: CniNetworkConfigList,
  plugin: CniPluginConf,
  rt: RuntimeConf,
  prevResult?: CniResult,
): string {
  const conf: Record<string, unknown> = { ...plugin, name: list.name, cniVersion: list.cniVersion };
  const runtimeConfig: Record<string, unknown> = isObject(plugin.runtimeConfig) ? { ...plugin.runtimeConfig } : {};
  for (const [cap, on] of Object.entries(plugin.capabilities ?? {})) {
    const value = rt.capabilityArgs[cap];
    if (on && value !== undefined) runtimeConfig[cap] = value;
  }
  if (Object.keys(runtimeConfig).length > 0) conf.runtimeConfig = runtimeConfig;
  else delete conf.runtimeConfig;
  if (prevResult) conf.prevResult = prevResult;
  else delete conf.prevResult;
  return JSON.stringify(conf);
}

function checkResult(list: CniNetworkConfigList, plugin: string, out: unknown): CniResult {
  if (!isObject(out)) {
    throw new CniPluginError(plugin, "ADD", list.name, 0, "returned no result", "");
  }
  const res = out as CniResult;
  if (res.ips !== undefined && !Array.isArray(res.ips)) {
    throw new CniPluginError(
      plugin,
      "ADD",
      list.name,
      0,
      "result has a non-array ips",
      JSON.stringify(out).slice(0, 2000),
    );
  }
  if (res.interfaces !== undefined && !Array.isArray(res.interfaces)) {
    throw new CniPluginError(
      plugin,
      "ADD",
      list.name,
      0,
      "result has a non-array interfaces",
      JSON.stringify(out).slice(0, 2000),
    );
  }
  return res;
}

/**
 * ADD: runs the plugins in order, each getting the previous one's result as prevResult;
 * the last result is the list's. `onPluginDone` sees each plugin's index as it succeeds.
 * On failure nothing is undone here: the caller runs delNetworkList (the SPEC asks for a
 * DEL of the whole list, also of plugins that never ran).
 */
export async function addNetworkList(exec: CniExec, list: CniNetworkConfigList, rt: RuntimeConf): Promise<CniResult> {
  let prev: CniResult | undefined;
  for (const plugin of list.plugins) {
    const out = await exec.run({
      plugin: plugin.type,
      command: "ADD",
      network: list.name,
      env: envFor("ADD", rt),
      stdin: pluginStdin(list, plugin, rt, prev),
    });
    prev = checkResult(list, plugin.type, out);
  }
  return prev as CniResult;
}

/** True for DEL failures that only say the thing to delete is already gone. */
export function isAlreadyGone(err: unknown): boolean {
  if (!(err instanceof CniPluginError)) return false;
  if (err.cniCode === CNI_ERR_UNKNOWN_CONTAINER) return true;
  return /no such file or directory|not found|does not exist|no such device|no such process/i.test(
    `${err.cniMsg} ${err.details}`,
  );
}

/**
 * DEL: runs the plugins in reverse order with the ADD result as prevResult (when known).
 * Plugins must tolerate missing resources; failures that only say "already gone" are
 * treated as success so a repeated teardown does not get stuck.
 */
export async function delNetworkList(
  exec: CniExec,
  list: CniNetworkConfigList,
  rt: RuntimeConf,
  prevResult?: CniResult,
): Promise<void> {
  for (const plugin of [...list.plugins].reverse()) {
    try {
      await exec.run({
        plugin: plugin.type,
        command: "DEL",
        network: list.name,
        env: envFor("DEL", rt),
        stdin: pluginStdin(list, plugin, rt, prevResult),
      });
    } catch (err) {
      if (!isAlreadyGone(err)) throw err;
    }
  }
}

/**
 * CHECK: asks every plugin whether the container's networking is still as ADD left it.
 * Skipped (resolves false) for lists older than 0.4.0 or with disableCheck.
 */
export async function checkNetworkList(
  exec: CniExec,
  list: CniNetworkConfigList,
  rt: RuntimeConf,
  prevResult: CniResult,
): Promise<boolean> {
  if (list.disableCheck || compareVersions(list.cniVersion, "0.4.0") < 0) return false;
  for (const plugin of list.plugins) {
    await exec.run({
      plugin: plugin.type,
      command: "CHECK",
      network: list.name,
      env: envFor("CHECK", rt),
      stdin: pluginStdin(list, plugin, rt, prevResult),
    });
  }
  return true;
}

/** The loopback "network" every pod gets first, so `lo` is up (containerd does the same). */
export function loopbackNetwork(cniVersion: string): CniNetworkConfigList {
  return { cniVersion, name: "cni-loopback", disableCheck: false, plugins: [{ type: "loopback" }], source: "" };
}
