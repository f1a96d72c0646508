// What berth needs from the host's AppArmor: whether the kernel enforces it, which
// profiles are loaded, and loading a profile with apparmor_parser. Behind an interface
// so the profile decision is tested with a fake host (this test machine has no AppArmor).

import { execFileSync } from "node:child_process";
import { accessSync, constants, existsSync, readFileSync } from "node:fs";
import { join } from "node:path";

export interface AppArmorHost {
  /** /sys/module/apparmor/parameters/enabled is "Y". */
  kernelEnabled: boolean;
  /** apparmor_parser's path, or null where it is not installed (profiles cannot be loaded). */
  parserPath: string | null;
  /** Names of the loaded profiles. */
  loadedProfiles(): string[];
  /** Loads (or replaces) a profile from its text; throws with the parser's message. */
  load(text: string): void;
  /** /etc/apparmor.d/<rel> exists (the includes the profile may use). */
  macroExists(rel: string): boolean;
  /** The daemon's own AppArmor label. */
  currentLabel(): string;
}

const PARSER_DIRS = ["/usr/sbin", "/sbin", "/usr/bin", "/bin", "/usr/local/sbin"];

function findParser(): string | null {
  for (const d of PARSER_DIRS) {
    const p = join(d, "apparmor_parser");
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return null;
}

/** Loaded profile names, from the "name (mode)" lines of securityfs. */
export function parseLoadedProfiles(text: string): string[] {
  return text
    .split("\n")
    .map((l) => l.replace(/ \([^)]*\)\s*$/, "").trim())
    .filter((l) => l !== "");
}

function readOr(path: string, fallback: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return fallback;
  }
}

/** The real host; kernelEnabled comes from the daemon's host probe (HostFacts). */
export function systemAppArmorHost(kernelEnabled: boolean): AppArmorHost {
  const parserPath = kernelEnabled ? findParser() : null;
  return {
    kernelEnabled,
    parserPath,
    loadedProfiles: () => parseLoadedProfiles(readOr("/sys/kernel/security/apparmor/profiles", "")),
    load(text: string) {
      if (!parserPath) throw new Error("apparmor_parser is not installed");
      try {
        // -K: do not write the binary cache; -r: replace a profile of the same name.
        // The text goes on stdin, so no file is left behind.
        execFileSync(parserPath, ["-Kr"], { input: text, stdio: ["pipe", "pipe", "pipe"], timeout: 60_000 });
      } catch (err) {
        const e = err as { stderr?: Buffer; message: string };
        const why = e.stderr?.toString().trim() || e.message;
        throw new Error(`apparmor_parser -Kr failed: ${why}`, { cause: err });
      }
    },
    macroExists: (rel) => existsSync(join("/etc/apparmor.d", rel)),
    currentLabel: () => readOr("/proc/self/attr/current", ""),
  };
}
