// Seccomp and AppArmor profile choice from the CRI security context, following
// containerd's CRI plugin: the SecurityProfile message wins over the deprecated
// "runtime/default" | "docker/default" | "unconfined" | "localhost/<path>" strings;
// privileged containers get no seccomp filter. AppArmor is decided in apparmor.ts.

import { readFileSync } from "node:fs";
import { isAbsolute } from "node:path";
import { SecurityProfile_ProfileType, type SecurityProfile } from "../../gen/cri/runtime/v1/api.js";
import { InvalidArgumentError } from "../../util/errors.js";
import { defaultSeccompProfile } from "../../oci/seccomp-default.js";
import type { Seccomp, SeccompSyscall } from "../../oci/spec.js";

const LOCALHOST_PREFIX = "localhost/";

/** The deprecated profile string as a SecurityProfile; undefined for "". */
export function profileFromString(text: string, what: string): SecurityProfile | undefined {
  switch (text) {
    case "":
      return undefined;
    case "runtime/default":
    case "docker/default":
      return { profileType: SecurityProfile_ProfileType.RuntimeDefault, localhostRef: "" };
    case "unconfined":
      return { profileType: SecurityProfile_ProfileType.Unconfined, localhostRef: "" };
    default:
      if (!text.startsWith(LOCALHOST_PREFIX)) {
        throw new InvalidArgumentError(
          `invalid ${what} profile ${JSON.stringify(text)}: use "runtime/default", "unconfined" or "localhost/<path>"`,
        );
      }
      return { profileType: SecurityProfile_ProfileType.Localhost, localhostRef: text.slice(LOCALHOST_PREFIX.length) };
  }
}

export interface SeccompRequest {
  profile?: SecurityProfile;
  /** The deprecated seccomp_profile_path. */
  legacyPath?: string;
  /** Used when neither is set; "" (containerd's default) means unconfined. */
  unsetProfile?: string;
  privileged: boolean;
  /** Bounding capabilities of the process: the default profile allows more with more. */
  capabilities: readonly string[];
  kernelRelease?: string;
  /** The runtime default profile covers the native ABI only (see DefaultProfileOptions). */
  nativeArchOnly?: boolean;
}

const ACTIONS = new Set([
  "SCMP_ACT_KILL",
  "SCMP_ACT_KILL_PROCESS",
  "SCMP_ACT_KILL_THREAD",
  "SCMP_ACT_TRAP",
  "SCMP_ACT_ERRNO",
  "SCMP_ACT_TRACE",
  "SCMP_ACT_ALLOW",
  "SCMP_ACT_LOG",
  "SCMP_ACT_NOTIFY",
]);

/**
 * Reads a localhost seccomp profile (an OCI `linux.seccomp` object, or a Docker-style
 * profile whose `archMap` gives the architectures and whose syscall entries may use
 * `name`). Like containerd, conditional `includes`/`excludes` of Docker profiles are
 * not evaluated.
 */
export function loadSeccompProfile(path: string): Seccomp {
  if (!isAbsolute(path)) {
    throw new InvalidArgumentError(`seccomp profile ${JSON.stringify(path)} must be an absolute path on the node`);
  }
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new InvalidArgumentError(`cannot read seccomp profile ${path}: ${(err as Error).message}`, { cause: err });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new InvalidArgumentError(`seccomp profile ${path} is not valid JSON: ${(err as Error).message}`, {
      cause: err,
    });
  }
  const bad = (why: string) => new InvalidArgumentError(`seccomp profile ${path} is invalid: ${why}`);
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw bad("expected a JSON object");
  const o = raw as Record<string, unknown>;
  if (typeof o.defaultAction !== "string" || !ACTIONS.has(o.defaultAction)) {
    throw bad(`defaultAction ${JSON.stringify(o.defaultAction)} is not a seccomp action`);
  }
  const out: Seccomp = { defaultAction: o.defaultAction as Seccomp["defaultAction"] };
  if (o.defaultErrnoRet !== undefined) {
    if (typeof o.defaultErrnoRet !== "number") throw bad("defaultErrnoRet must be a number");
    out.defaultErrnoRet = o.defaultErrnoRet;
  }
  if (Array.isArray(o.architectures)) {
    out.architectures = o.architectures.map(String);
  } else if (Array.isArray(o.archMap)) {
    const arches: string[] = [];
    for (const a of o.archMap as { architecture?: unknown; subArchitectures?: unknown }[]) {
      if (typeof a?.architecture === "string") arches.push(a.architecture);
      if (Array.isArray(a?.subArchitectures)) arches.push(...a.subArchitectures.map(String));
    }
    out.architectures = arches;
  }
  if (Array.isArray(o.flags)) out.flags = o.flags.map(String);
  if (typeof o.listenerPath === "string" && o.listenerPath !== "") out.listenerPath = o.listenerPath;
  if (typeof o.listenerMetadata === "string" && o.listenerMetadata !== "") out.listenerMetadata = o.listenerMetadata;
  if (o.syscalls !== undefined && o.syscalls !== null) {
    if (!Array.isArray(o.syscalls)) throw bad("syscalls must be a list");
    out.syscalls = o.syscalls.map((s: unknown, i: number): SeccompSyscall => {
      if (typeof s !== "object" || s === null) throw bad(`syscalls[${i}] is not an object`);
      const e = s as Record<string, unknown>;
      const names = Array.isArray(e.names) ? e.names.map(String) : typeof e.name === "string" ? [e.name] : null;
      if (!names || names.length === 0) throw bad(`syscalls[${i}] names no system call`);
      if (typeof e.action !== "string" || !ACTIONS.has(e.action))
        throw bad(`syscalls[${i}].action is not a seccomp action`);
      const entry: SeccompSyscall = { names, action: e.action as SeccompSyscall["action"] };
      if (typeof e.errnoRet === "number") entry.errnoRet = e.errnoRet;
      if (Array.isArray(e.args) && e.args.length > 0) entry.args = e.args as SeccompSyscall["args"];
      return entry;
    });
  }
  return out;
}

/** The seccomp filter for a process, or undefined for none (unconfined). */
export function resolveSeccomp(req: SeccompRequest): Seccomp | undefined {
  if (req.privileged) return undefined;
  let sp = req.profile;
  if (!sp) sp = profileFromString(req.legacyPath || req.unsetProfile || "", "seccomp");
  if (!sp) return undefined;
  if (sp.profileType !== SecurityProfile_ProfileType.Localhost && sp.localhostRef !== "") {
    throw new InvalidArgumentError("seccomp localhost_ref must only be set when the profile type is Localhost");
  }
  switch (sp.profileType) {
    case SecurityProfile_ProfileType.Unconfined:
      return undefined;
    case SecurityProfile_ProfileType.RuntimeDefault:
      return defaultSeccompProfile({
        capabilities: req.capabilities,
        kernelRelease: req.kernelRelease,
        nativeArchOnly: req.nativeArchOnly,
      });
    case SecurityProfile_ProfileType.Localhost: {
      const ref = sp.localhostRef.startsWith(LOCALHOST_PREFIX)
        ? sp.localhostRef.slice(LOCALHOST_PREFIX.length)
        : sp.localhostRef;
      if (ref === "")
        throw new InvalidArgumentError("seccomp profile type Localhost needs a localhost_ref (a file path)");
      return loadSeccompProfile(ref);
    }
    default:
      throw new InvalidArgumentError(`unknown seccomp profile type ${sp.profileType}`);
  }
}
