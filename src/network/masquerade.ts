// The outbound NAT of berth's default network: ONE iptables rule per network, installed by
// berthd at start and removed by `berthd uninstall`, instead of the bridge plugin's ipMasq,
// which builds a chain per pod (9 iptables runs on ADD and 6 on DEL, tens of ms per pod).
//
//   nat POSTROUTING:    -m comment --comment "berth: ..." -j BERTH-POSTROUTING
//   BERTH-POSTROUTING:  -s SUBNET ! -d SUBNET -m comment --comment "berth default network of CONF_DIR" -j MASQUERADE
//
// Traffic from the pod subnet to anything outside it leaves with the host's address; pod to
// pod (and pod to the bridge gateway) traffic keeps its addresses. The rule is tagged with the
// conf_dir whose default network it serves, so two berthds on one host (tests do that) each
// add and remove only their own, and a restart finds its rule instead of adding a second one.
//
// Several berthds may change the chain at once (iptables -w only serialises single commands,
// and check-then-add is two): each change runs under an flock on /run/berth-masquerade.lock,
// which the kernel releases if the holder dies.

import { createHash } from "node:crypto";
import { open } from "node:fs/promises";
import { flock, LOCK_EX, LOCK_NB } from "../sys/index.js";
import { runProgram } from "../sys/spawn.js";
import { InternalError, InvalidArgumentError } from "../util/errors.js";
import { sleep } from "../util/sleep.js";

export const MASQUERADE_CHAIN = "BERTH-POSTROUTING";
const JUMP_COMMENT = "berth: masquerade of berthd default pod networks";
const JUMP = ["-m", "comment", "--comment", JUMP_COMMENT, "-j", MASQUERADE_CHAIN];
const COMMENT_PREFIX = "berth default network of ";
/** xt_comment's limit is 256 bytes including the NUL. */
const COMMENT_MAX = 255;
const LOCK_FILE = "/run/berth-masquerade.lock";
/** The changes take a few iptables runs; a holder that long is stuck. */
const LOCK_WAIT_MS = 60_000;

export interface MasqueradeRule {
  /** IPv4 pod subnet, canonical ("10.85.0.0/16") */
  subnet: string;
  /** the conf_dir whose default network it serves (or its sha256 when the path is too long) */
  owner: string;
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs iptables on the nat table (posix_spawn through sys/spawn.ts: no fork of berthd). */
async function iptables(args: string[]): Promise<Run> {
  try {
    const r = await runProgram("iptables", ["-w", "-t", "nat", ...args]);
    return { code: r.code ?? 1, stdout: r.stdout.toString(), stderr: r.stderr.toString().trim() };
  } catch (e) {
    throw new InternalError(`run iptables: ${(e as Error).message}`, { cause: e });
  }
}

async function must(args: string[]): Promise<void> {
  const r = await iptables(args);
  if (r.code !== 0) throw new InternalError(`iptables -t nat ${args.join(" ")}: ${r.stderr || `exit ${r.code}`}`);
}

/** `-C`: true when the rule is there (false also when its chain is missing). */
async function has(chain: string, spec: string[]): Promise<boolean> {
  return (await iptables(["-C", chain, ...spec])).code === 0;
}

/** "10.85.3.0/16" -> "10.85.0.0/16", as iptables itself normalises it. IPv4 only. */
export function canonicalSubnet(cidr: string): string {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(cidr);
  const octets = m ? m.slice(1, 5).map(Number) : [];
  const bits = m ? Number(m[5]) : -1;
  if (!m || octets.some((o) => o > 255) || bits > 32) {
    throw new InvalidArgumentError(`pod subnet ${JSON.stringify(cidr)} is not an IPv4 CIDR`);
  }
  const addr = octets.reduce((a, o) => a * 256 + o, 0);
  const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
  const net = (addr & mask) >>> 0;
  return `${[24, 16, 8, 0].map((s) => (net >>> s) & 255).join(".")}/${bits}`;
}

/** The owner tag of a conf_dir: the path itself, or a hash when it would not fit a comment. */
export function masqueradeOwner(confDir: string): string {
  if (Buffer.byteLength(COMMENT_PREFIX + confDir) <= COMMENT_MAX && !/["\\\n]/.test(confDir)) return confDir;
  return `sha256:${createHash("sha256").update(confDir).digest("hex").slice(0, 32)}`;
}

function ruleSpec(r: MasqueradeRule): string[] {
  return [
    "-s",
    r.subnet,
    "!",
    "-d",
    r.subnet,
    "-m",
    "comment",
    "--comment",
    COMMENT_PREFIX + r.owner,
    "-j",
    "MASQUERADE",
  ];
}

const RULE_LINE = new RegExp(
  `^-A ${MASQUERADE_CHAIN} -s (\\S+) ! -d \\S+ -m comment --comment "?${COMMENT_PREFIX}(.*?)"? -j MASQUERADE$`,
);

/** berth's masquerade rules now in the chain (none when it does not exist). */
export async function listMasquerade(): Promise<MasqueradeRule[]> {
  const r = await iptables(["-S", MASQUERADE_CHAIN]);
  if (r.code !== 0) return [];
  const out: MasqueradeRule[] = [];
  for (const line of r.stdout.split("\n")) {
    const m = RULE_LINE.exec(line.trim());
    if (m) out.push({ subnet: m[1], owner: m[2] });
  }
  return out;
}

/** The number of rules of any kind in the chain; -1 when the chain does not exist. */
async function chainRules(): Promise<number> {
  const r = await iptables(["-S", MASQUERADE_CHAIN]);
  if (r.code !== 0) return -1;
  return r.stdout.split("\n").filter((l) => l.startsWith("-A ")).length;
}

/** Runs `fn` holding the lock every berthd on this host takes to change the chain. */
async function locked<T>(fn: () => Promise<T>): Promise<T> {
  const file = await open(LOCK_FILE, "a", 0o600);
  try {
    for (const deadline = Date.now() + LOCK_WAIT_MS; ;) {
      try {
        flock(file.fd, LOCK_EX | LOCK_NB);
        break;
      } catch (err) {
        const code = (err as { code?: string }).code;
        if ((code !== "EAGAIN" && code !== "EWOULDBLOCK") || Date.now() > deadline) {
          throw new InternalError(`lock ${LOCK_FILE}: ${(err as Error).message}`, { cause: err });
        }
        await sleep(10);
      }
    }
    return await fn();
  } finally {
    await file.close(); // releases the lock
  }
}

/**
 * Makes sure the chain, the jump to it and this rule exist, each once; drops rules of the same
 * owner for another subnet (a default network whose subnet changed). Returns whether anything
 * was added.
 */
export function ensureMasquerade(rule: MasqueradeRule): Promise<boolean> {
  const want = { subnet: canonicalSubnet(rule.subnet), owner: rule.owner };
  return locked(async () => {
    for (const stale of await listMasquerade()) {
      if (stale.owner === want.owner && stale.subnet !== want.subnet) {
        await must(["-D", MASQUERADE_CHAIN, ...ruleSpec(stale)]);
      }
    }
    let added = false;
    if ((await chainRules()) < 0) await must(["-N", MASQUERADE_CHAIN]);
    if (!(await has(MASQUERADE_CHAIN, ruleSpec(want)))) {
      await must(["-A", MASQUERADE_CHAIN, ...ruleSpec(want)]);
      added = true;
    }
    // Appended, as the bridge plugin's ipMasq did: an administrator's own SNAT rules earlier
    // in POSTROUTING keep precedence.
    if (!(await has("POSTROUTING", JUMP))) {
      await must(["-A", "POSTROUTING", ...JUMP]);
      added = true;
    }
    return added;
  });
}

/**
 * Removes berth's masquerade rules whose owner matches, then the jump and the chain once no
 * rule is left in it (another berthd's keeps both). Returns the rules removed. Safe to call
 * when none exists.
 */
export function removeMasquerade(match: (owner: string) => boolean): Promise<MasqueradeRule[]> {
  return locked(async () => {
    const removed: MasqueradeRule[] = [];
    for (const r of await listMasquerade()) {
      if (!match(r.owner)) continue;
      await must(["-D", MASQUERADE_CHAIN, ...ruleSpec(r)]);
      removed.push(r);
    }
    if ((await chainRules()) !== 0) return removed; // missing, or holding another berthd's rule
    while (await has("POSTROUTING", JUMP)) await must(["-D", "POSTROUTING", ...JUMP]);
    await must(["-X", MASQUERADE_CHAIN]);
    return removed;
  });
}
