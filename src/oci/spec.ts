// The parts of the OCI runtime spec (opencontainers/runtime-spec config.md and
// config-linux.md) that berth writes into a bundle's config.json. Field names are the
// JSON names of the spec; optional fields are left out of the JSON when unset, which is
// what runc expects (an empty list and an absent one can mean different things, e.g. an
// absent `linux.seccomp` is "unconfined" while an empty profile would still be loaded).

import { readFileSync } from "node:fs";
import { join } from "node:path";

import { writeFileAtomicSync } from "../util/atomic-write.js";

/** The spec version berth writes; runc 1.1 reads 1.0.x documents. */
export const OCI_VERSION = "1.0.2-dev";

export interface Spec {
  ociVersion: string;
  process: Process;
  root: Root;
  hostname?: string;
  mounts: Mount[];
  annotations?: Record<string, string>;
  linux: Linux;
  /** OCI lifecycle hooks (only CDI specs add any). */
  hooks?: Hooks;
}

export interface Hook {
  path: string;
  args?: string[];
  env?: string[];
  timeout?: number;
}

export type Hooks = Partial<
  Record<"prestart" | "createRuntime" | "createContainer" | "startContainer" | "poststart" | "poststop", Hook[]>
>;

export interface Process {
  terminal?: boolean;
  user: User;
  args: string[];
  env: string[];
  cwd: string;
  capabilities?: Capabilities;
  rlimits?: Rlimit[];
  noNewPrivileges?: boolean;
  apparmorProfile?: string;
  oomScoreAdj?: number;
  selinuxLabel?: string;
}

export interface User {
  uid: number;
  gid: number;
  umask?: number;
  additionalGids?: number[];
}

/** Capability names carry the `CAP_` prefix, e.g. `CAP_CHOWN`. */
export interface Capabilities {
  bounding: string[];
  effective: string[];
  inheritable: string[];
  permitted: string[];
  ambient: string[];
}

export interface Rlimit {
  type: string;
  soft: number;
  hard: number;
}

export interface Root {
  path: string;
  readonly?: boolean;
}

export interface Mount {
  destination: string;
  type?: string;
  source?: string;
  options?: string[];
  /** An idmapped mount (runtime-spec 1.1, runc 1.2+): ids of the source shifted by these mappings. */
  uidMappings?: IDMapping[];
  gidMappings?: IDMapping[];
}

export type NamespaceType = "pid" | "network" | "mount" | "ipc" | "uts" | "user" | "cgroup";

export interface Namespace {
  type: NamespaceType;
  /** A namespace file to join (e.g. /proc/PID/ns/net); absent means "create a new one". */
  path?: string;
}

export interface IDMapping {
  containerID: number;
  hostID: number;
  size: number;
}

export interface Linux {
  namespaces: Namespace[];
  uidMappings?: IDMapping[];
  gidMappings?: IDMapping[];
  devices?: Device[];
  cgroupsPath?: string;
  resources?: Resources;
  rootfsPropagation?: string;
  seccomp?: Seccomp;
  sysctl?: Record<string, string>;
  maskedPaths?: string[];
  readonlyPaths?: string[];
  mountLabel?: string;
}

export interface Device {
  /** "c", "b", "u" or "p". */
  type: string;
  path: string;
  major: number;
  minor: number;
  fileMode?: number;
  uid?: number;
  gid?: number;
}

export interface DeviceCgroup {
  allow: boolean;
  /** "a", "c" or "b"; absent means all. */
  type?: string;
  major?: number;
  minor?: number;
  access?: string;
}

export interface Memory {
  limit?: number;
  reservation?: number;
  swap?: number;
  swappiness?: number;
  disableOOMKiller?: boolean;
}

export interface Cpu {
  shares?: number;
  quota?: number;
  period?: number;
  cpus?: string;
  mems?: string;
}

export interface Pids {
  limit: number;
}

export interface HugepageLimit {
  pageSize: string;
  limit: number;
}

export interface Resources {
  devices?: DeviceCgroup[];
  memory?: Memory;
  cpu?: Cpu;
  pids?: Pids;
  hugepageLimits?: HugepageLimit[];
  /** cgroup v2 files written as-is (e.g. "memory.high"). */
  unified?: Record<string, string>;
}

export type SeccompAction =
  | "SCMP_ACT_KILL"
  | "SCMP_ACT_KILL_PROCESS"
  | "SCMP_ACT_KILL_THREAD"
  | "SCMP_ACT_TRAP"
  | "SCMP_ACT_ERRNO"
  | "SCMP_ACT_TRACE"
  | "SCMP_ACT_ALLOW"
  | "SCMP_ACT_LOG"
  | "SCMP_ACT_NOTIFY";

export type SeccompOperator =
  "SCMP_CMP_NE" | "SCMP_CMP_LT" | "SCMP_CMP_LE" | "SCMP_CMP_EQ" | "SCMP_CMP_GE" | "SCMP_CMP_GT" | "SCMP_CMP_MASKED_EQ";

export interface SeccompArg {
  index: number;
  value: number;
  valueTwo?: number;
  op: SeccompOperator;
}

export interface SeccompSyscall {
  names: string[];
  action: SeccompAction;
  errnoRet?: number;
  args?: SeccompArg[];
}

export interface Seccomp {
  defaultAction: SeccompAction;
  defaultErrnoRet?: number;
  architectures?: string[];
  flags?: string[];
  listenerPath?: string;
  listenerMetadata?: string;
  syscalls?: SeccompSyscall[];
}

/** The config.json text of a spec (two-space indented, like runc's own `runc spec`). */
export function specToJSON(spec: Spec): string {
  return JSON.stringify(spec, null, 2) + "\n";
}

/**
 * Writes `<bundleDir>/config.json` atomically and durably (util/atomic-write.ts), so a crash
 * leaves either no config or a whole one.
 */
export function writeSpecFile(bundleDir: string, spec: Spec): string {
  const target = join(bundleDir, "config.json");
  writeFileAtomicSync(target, specToJSON(spec), 0o600);
  return target;
}

/** Reads a bundle's config.json back. */
export function readSpecFile(bundleDir: string): Spec {
  return JSON.parse(readFileSync(join(bundleDir, "config.json"), "utf8")) as Spec;
}
