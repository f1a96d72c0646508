// CDI spec files (cncf-tags/container-device-interface SPEC.md, spec versions 0.1.0 to 1.1.0):
// parsing from JSON or YAML and validation as the spec defines it. A file that breaks a rule
// is refused as a whole with the rule it breaks, as the reference library refuses it: unknown
// fields, an unknown cdiVersion, a version lower than the fields used require, a bad kind or
// device name, a device without a name, a relative hook path.
import { createRequire } from "node:module";

// yaml (about 4.5 MiB of loaded modules) is required at the first YAML spec file: most nodes
// have none, and berthd loads this module at start (issue 15).
const require = createRequire(import.meta.url);
let yaml: typeof import("yaml") | undefined;
const parseYaml = (text: string): unknown => (yaml ??= require("yaml") as typeof import("yaml")).parse(text);

export interface CdiDeviceNode {
  path: string;
  hostPath?: string;
  type?: string;
  major?: number;
  minor?: number;
  fileMode?: number;
  permissions?: string;
  uid?: number;
  gid?: number;
}

export interface CdiMount {
  hostPath: string;
  containerPath: string;
  type?: string;
  options?: string[];
}

export interface CdiHook {
  hookName: string;
  path: string;
  args?: string[];
  env?: string[];
  timeout?: number;
}

export interface CdiNetDevice {
  hostInterfaceName: string;
  name: string;
}

export interface CdiContainerEdits {
  env?: string[];
  deviceNodes?: CdiDeviceNode[];
  mounts?: CdiMount[];
  hooks?: CdiHook[];
  additionalGids?: number[];
  intelRdt?: Record<string, unknown>;
  netDevices?: CdiNetDevice[];
}

export interface CdiDevice {
  name: string;
  annotations?: Record<string, string>;
  containerEdits: CdiContainerEdits;
}

export interface CdiSpec {
  cdiVersion: string;
  kind: string;
  annotations?: Record<string, string>;
  devices: CdiDevice[];
  containerEdits?: CdiContainerEdits;
}

/** Known spec versions, oldest first (SPEC.md's table plus the untagged 0.1.0 and 0.2.0). */
export const CDI_VERSIONS = ["0.1.0", "0.2.0", "0.3.0", "0.4.0", "0.5.0", "0.6.0", "0.7.0", "0.8.0", "1.0.0", "1.1.0"];

/** The OCI hook names CDI hooks may use. */
export const HOOK_NAMES = ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"];

export class CdiSpecError extends Error {}

type Obj = Record<string, unknown>;

const KIND_VENDOR = /^[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)*$/;
const KIND_CLASS = /^[a-zA-Z0-9]([a-zA-Z0-9_.-]*[a-zA-Z0-9])?$/;
const DEVICE_NAME = /^[a-zA-Z0-9]([a-zA-Z0-9_.:-]*[a-zA-Z0-9])?$/;

/** Parses a spec file's text; `file` decides the format (.yaml/.yml is YAML, else JSON). */
export function parseCdiSpec(text: string, file: string): CdiSpec {
  let raw: unknown;
  try {
    raw = /\.ya?ml$/.test(file) ? parseYaml(text) : JSON.parse(text);
  } catch (err) {
    throw new CdiSpecError(`not valid ${/\.ya?ml$/.test(file) ? "YAML" : "JSON"}: ${(err as Error).message}`);
  }
  return validateCdiSpec(raw);
}

/** Validates a parsed document against the spec and returns it typed. */
export function validateCdiSpec(raw: unknown): CdiSpec {
  const spec = object(raw, "the spec");
  fields(spec, "the spec", ["cdiVersion", "kind", "annotations", "devices", "containerEdits"]);
  const version = str(spec.cdiVersion, "cdiVersion").replace(/^v/, "");
  if (!CDI_VERSIONS.includes(version)) throw new CdiSpecError(`unknown cdiVersion ${JSON.stringify(spec.cdiVersion)}`);
  const kind = str(spec.kind, "kind");
  validateKind(kind);
  const annotations = stringMap(spec.annotations, "annotations");
  if (!Array.isArray(spec.devices) || spec.devices.length === 0)
    throw new CdiSpecError("devices must be a list of at least one device");
  const names = new Set<string>();
  const devices = spec.devices.map((d, i): CdiDevice => {
    const dev = object(d, `devices[${i}]`);
    fields(dev, `devices[${i}]`, ["name", "annotations", "containerEdits"]);
    const name = str(dev.name, `devices[${i}].name`);
    if (!DEVICE_NAME.test(name)) throw new CdiSpecError(`invalid device name ${JSON.stringify(name)}`);
    if (names.has(name)) throw new CdiSpecError(`device ${JSON.stringify(name)} is defined twice`);
    names.add(name);
    const edits = containerEdits(dev.containerEdits, `device ${name}`);
    return { name, annotations: stringMap(dev.annotations, `device ${name} annotations`), containerEdits: edits };
  });
  const out: CdiSpec = {
    cdiVersion: version,
    kind,
    annotations,
    devices,
    containerEdits:
      spec.containerEdits === undefined ? undefined : containerEdits(spec.containerEdits, "containerEdits"),
  };
  const min = minimumVersion(out);
  if (CDI_VERSIONS.indexOf(min) > CDI_VERSIONS.indexOf(version))
    throw new CdiSpecError(`the fields used need cdiVersion ${min} or later, the spec says ${version}`);
  return out;
}

function validateKind(kind: string): void {
  const slash = kind.indexOf("/");
  const vendor = kind.slice(0, slash);
  const cls = kind.slice(slash + 1);
  if (slash <= 0 || !KIND_VENDOR.test(vendor) || vendor.length > 253 || !KIND_CLASS.test(cls) || cls.length > 63)
    throw new CdiSpecError(`invalid kind ${JSON.stringify(kind)} (want vendor.com/class)`);
}

/** The earliest spec version that has every field the spec uses (the library's rules). */
export function minimumVersion(spec: CdiSpec): string {
  const edits = [spec.containerEdits, ...spec.devices.map((d) => d.containerEdits)].filter(
    (e): e is CdiContainerEdits => e !== undefined,
  );
  if (
    edits.some((e) => e.netDevices?.length) ||
    edits.some((e) => e.intelRdt && ("schemata" in e.intelRdt || "enableMonitoring" in e.intelRdt))
  )
    return "1.1.0";
  if (edits.some((e) => e.intelRdt || e.additionalGids?.length)) return "0.7.0";
  const cls = spec.kind.slice(spec.kind.indexOf("/") + 1);
  if (
    (spec.annotations && Object.keys(spec.annotations).length) ||
    spec.devices.some((d) => d.annotations && Object.keys(d.annotations).length) ||
    cls.includes(".")
  )
    return "0.6.0";
  if (spec.devices.some((d) => /^[0-9]/.test(d.name)) || edits.some((e) => e.deviceNodes?.some((n) => n.hostPath)))
    return "0.5.0";
  if (edits.some((e) => e.mounts?.some((m) => m.type))) return "0.4.0";
  return "0.3.0";
}

function containerEdits(raw: unknown, where: string): CdiContainerEdits {
  if (raw === undefined || raw === null) return {};
  const e = object(raw, where);
  fields(e, where, [
    "env",
    "deviceNodes",
    "mounts",
    "hooks",
    "additionalGids",
    "additionalGIDs",
    "intelRdt",
    "netDevices",
  ]);
  const out: CdiContainerEdits = {};
  if (e.env !== undefined) {
    out.env = strList(e.env, `${where} env`);
    for (const v of out.env)
      if (!v.includes("=")) throw new CdiSpecError(`${where}: env ${JSON.stringify(v)} is not NAME=VALUE`);
  }
  if (e.deviceNodes !== undefined)
    out.deviceNodes = list(e.deviceNodes, `${where} deviceNodes`).map((n, i) =>
      deviceNode(n, `${where} deviceNodes[${i}]`),
    );
  if (e.mounts !== undefined)
    out.mounts = list(e.mounts, `${where} mounts`).map((m, i) => mount(m, `${where} mounts[${i}]`));
  if (e.hooks !== undefined) out.hooks = list(e.hooks, `${where} hooks`).map((h, i) => hook(h, `${where} hooks[${i}]`));
  const gids = e.additionalGids ?? e.additionalGIDs;
  if (gids !== undefined)
    out.additionalGids = list(gids, `${where} additionalGids`).map((g) => uint(g, `${where} additionalGids`));
  if (e.intelRdt !== undefined) out.intelRdt = object(e.intelRdt, `${where} intelRdt`);
  if (e.netDevices !== undefined)
    out.netDevices = list(e.netDevices, `${where} netDevices`).map((d, i) => {
      const o = object(d, `${where} netDevices[${i}]`);
      fields(o, `${where} netDevices[${i}]`, ["hostInterfaceName", "name"]);
      return { hostInterfaceName: str(o.hostInterfaceName, "hostInterfaceName"), name: str(o.name, "name") };
    });
  return out;
}

function deviceNode(raw: unknown, where: string): CdiDeviceNode {
  const o = object(raw, where);
  fields(o, where, ["path", "hostPath", "type", "major", "minor", "fileMode", "permissions", "uid", "gid"]);
  const path = str(o.path, `${where} path`);
  if (!path.startsWith("/")) throw new CdiSpecError(`${where}: path ${JSON.stringify(path)} is not absolute`);
  const n: CdiDeviceNode = { path };
  if (o.hostPath !== undefined) n.hostPath = str(o.hostPath, `${where} hostPath`);
  if (o.type !== undefined) {
    n.type = str(o.type, `${where} type`);
    if (!["b", "c", "u", "p"].includes(n.type))
      throw new CdiSpecError(`${where}: invalid device type ${JSON.stringify(n.type)}`);
  }
  for (const k of ["major", "minor", "fileMode", "uid", "gid"] as const)
    if (o[k] !== undefined) n[k] = uint(o[k], `${where} ${k}`);
  if (o.permissions !== undefined) {
    n.permissions = str(o.permissions, `${where} permissions`);
    if (n.permissions !== "none" && !/^[rwm]*$/.test(n.permissions))
      throw new CdiSpecError(`${where}: invalid permissions ${JSON.stringify(n.permissions)}`);
  }
  return n;
}

function mount(raw: unknown, where: string): CdiMount {
  const o = object(raw, where);
  fields(o, where, ["hostPath", "containerPath", "type", "options"]);
  const m: CdiMount = {
    hostPath: str(o.hostPath, `${where} hostPath`),
    containerPath: str(o.containerPath, `${where} containerPath`),
  };
  if (o.type !== undefined) m.type = str(o.type, `${where} type`);
  if (o.options !== undefined) m.options = strList(o.options, `${where} options`);
  return m;
}

function hook(raw: unknown, where: string): CdiHook {
  const o = object(raw, where);
  fields(o, where, ["hookName", "path", "args", "env", "timeout"]);
  const h: CdiHook = { hookName: str(o.hookName, `${where} hookName`), path: str(o.path, `${where} path`) };
  if (!HOOK_NAMES.includes(h.hookName))
    throw new CdiSpecError(`${where}: unknown hook name ${JSON.stringify(h.hookName)}`);
  if (!h.path.startsWith("/")) throw new CdiSpecError(`${where}: hook path ${JSON.stringify(h.path)} is not absolute`);
  if (o.args !== undefined) h.args = strList(o.args, `${where} args`);
  if (o.env !== undefined) h.env = strList(o.env, `${where} env`);
  if (o.timeout !== undefined) {
    h.timeout = uint(o.timeout, `${where} timeout`);
    if (h.timeout === 0) throw new CdiSpecError(`${where}: timeout must be greater than zero`);
  }
  return h;
}

function object(v: unknown, where: string): Obj {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new CdiSpecError(`${where} must be an object`);
  return v as Obj;
}

function fields(o: Obj, where: string, allowed: string[]): void {
  for (const k of Object.keys(o))
    if (!allowed.includes(k)) throw new CdiSpecError(`${where}: unknown field ${JSON.stringify(k)}`);
}

function str(v: unknown, where: string): string {
  if (typeof v !== "string" || v === "") throw new CdiSpecError(`${where} must be a non-empty string`);
  return v;
}

function list(v: unknown, where: string): unknown[] {
  if (!Array.isArray(v)) throw new CdiSpecError(`${where} must be a list`);
  return v;
}

function strList(v: unknown, where: string): string[] {
  return list(v, where).map((s) => {
    if (typeof s !== "string") throw new CdiSpecError(`${where} must be a list of strings`);
    return s;
  });
}

function uint(v: unknown, where: string): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > 2 ** 32 - 1)
    throw new CdiSpecError(`${where} must be an unsigned 32-bit integer`);
  return v;
}

function stringMap(v: unknown, where: string): Record<string, string> | undefined {
  if (v === undefined || v === null) return undefined;
  const o = object(v, where);
  for (const [k, s] of Object.entries(o))
    if (typeof s !== "string") throw new CdiSpecError(`${where}: ${k} must be a string`);
  return o as Record<string, string>;
}
