// Linux capability names and the capability arithmetic of the CRI security context
// (add/drop with "ALL"), following containerd's CRI plugin.

import { readFileSync } from "node:fs";
import { InvalidArgumentError } from "../util/errors.js";

/** Capability names indexed by their number (linux/capability.h), up to CAP_CHECKPOINT_RESTORE (40). */
export const KNOWN_CAPABILITIES: readonly string[] = [
  "CAP_CHOWN",
  "CAP_DAC_OVERRIDE",
  "CAP_DAC_READ_SEARCH",
  "CAP_FOWNER",
  "CAP_FSETID",
  "CAP_KILL",
  "CAP_SETGID",
  "CAP_SETUID",
  "CAP_SETPCAP",
  "CAP_LINUX_IMMUTABLE",
  "CAP_NET_BIND_SERVICE",
  "CAP_NET_BROADCAST",
  "CAP_NET_ADMIN",
  "CAP_NET_RAW",
  "CAP_IPC_LOCK",
  "CAP_IPC_OWNER",
  "CAP_SYS_MODULE",
  "CAP_SYS_RAWIO",
  "CAP_SYS_CHROOT",
  "CAP_SYS_PTRACE",
  "CAP_SYS_PACCT",
  "CAP_SYS_ADMIN",
  "CAP_SYS_BOOT",
  "CAP_SYS_NICE",
  "CAP_SYS_RESOURCE",
  "CAP_SYS_TIME",
  "CAP_SYS_TTY_CONFIG",
  "CAP_MKNOD",
  "CAP_LEASE",
  "CAP_AUDIT_WRITE",
  "CAP_AUDIT_CONTROL",
  "CAP_SETFCAP",
  "CAP_MAC_OVERRIDE",
  "CAP_MAC_ADMIN",
  "CAP_SYSLOG",
  "CAP_WAKE_ALARM",
  "CAP_BLOCK_SUSPEND",
  "CAP_AUDIT_READ",
  "CAP_PERFMON",
  "CAP_BPF",
  "CAP_CHECKPOINT_RESTORE",
];

/** The default set containerd (and Docker) give a non-privileged container. */
export const DEFAULT_CAPABILITIES: readonly string[] = [
  "CAP_CHOWN",
  "CAP_DAC_OVERRIDE",
  "CAP_FSETID",
  "CAP_FOWNER",
  "CAP_MKNOD",
  "CAP_NET_RAW",
  "CAP_SETGID",
  "CAP_SETUID",
  "CAP_SETFCAP",
  "CAP_SETPCAP",
  "CAP_NET_BIND_SERVICE",
  "CAP_SYS_CHROOT",
  "CAP_KILL",
  "CAP_AUDIT_WRITE",
];

/** Names of the bits set in a capability mask (as in /proc/PID/status), in number order. */
export function capabilitiesFromMask(mask: bigint): string[] {
  const out: string[] = [];
  for (let i = 0; i < KNOWN_CAPABILITIES.length; i++) {
    if ((mask >> BigInt(i)) & 1n) out.push(KNOWN_CAPABILITIES[i]!);
  }
  return out;
}

/**
 * The effective capabilities of this process. containerd's "ALL" and privileged
 * containers get these rather than every known capability: a capability the daemon
 * lacks (here CAP_SYS_RESOURCE) cannot be given to a child, and asking runc for it fails.
 */
export function currentCapabilities(statusPath = "/proc/self/status"): string[] {
  const text = readFileSync(statusPath, "utf8");
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(text);
  if (!m) return [...KNOWN_CAPABILITIES];
  return capabilitiesFromMask(BigInt("0x" + m[1]!));
}

/** "chown", "CHOWN" or "CAP_CHOWN" -> "CAP_CHOWN"; unknown names are an InvalidArgumentError. */
export function normalizeCapability(name: string): string {
  const upper = name.trim().toUpperCase();
  const full = upper.startsWith("CAP_") ? upper : "CAP_" + upper;
  if (!KNOWN_CAPABILITIES.includes(full)) {
    throw new InvalidArgumentError(
      `unknown capability ${JSON.stringify(name)}: use a Linux capability name such as "NET_ADMIN" or "ALL"`,
    );
  }
  return full;
}

/**
 * The capability set after a CRI add/drop: start from `base`; "ALL" in add means every
 * capability the daemon has, "ALL" in drop means none; then single names are added and
 * dropped, in that order, so add ["ALL"] + drop ["CHOWN"] is everything but CAP_CHOWN and
 * drop ["ALL"] + add ["NET_BIND_SERVICE"] is only that one (containerd's WithCapabilities).
 */
export function applyCapabilityChanges(
  base: readonly string[],
  add: readonly string[],
  drop: readonly string[],
  all: readonly string[],
): string[] {
  const isAll = (c: string) => c.trim().toUpperCase() === "ALL";
  let caps = [...base];
  if (add.some(isAll)) caps = [...all];
  if (drop.some(isAll)) caps = [];
  for (const c of add) {
    if (isAll(c)) continue;
    const n = normalizeCapability(c);
    if (!caps.includes(n)) caps.push(n);
  }
  for (const c of drop) {
    if (isAll(c)) continue;
    const n = normalizeCapability(c);
    caps = caps.filter((x) => x !== n);
  }
  return caps;
}
