// Why a leaked veth is still there: a veth lives as long as the network namespace of its peer,
// and a namespace lives while a process is in it or a mount pins it (in any mount namespace).
// For a leak report, this names who holds the peer's namespace, so a one-off leak seen in CI
// can be traced from its log alone.
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync, readlinkSync } from "node:fs";

function procs(): string[] {
  return readdirSync("/proc").filter((p) => /^\d+$/.test(p));
}

function cmdline(pid: string): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ").trim();
  } catch {
    return "?";
  }
}

/**
 * Describes who holds the namespace of the peer of host veth `name` (as `ip -o link` prints it,
 * e.g. "vethdf57041e@if2"): the processes in it, or the nsfs mounts pinning it. Best effort:
 * returns what it could find, never throws.
 */
export function vethPeerHolders(name: string): string {
  // Leak checks poll; one look per veth is enough.
  let answer = explained.get(name);
  if (answer === undefined) {
    answer = explain(name);
    explained.set(name, answer);
  }
  return answer;
}

const explained = new Map<string, string>();

/** `ip -o link` inside the network namespace pinned at `nsPath` ("" when it cannot be entered). */
function linksIn(nsPath: string): string {
  try {
    return execFileSync("nsenter", [`--net=${nsPath}`, "ip", "-o", "link"], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    });
  } catch {
    return "";
  }
}

function explain(name: string): string {
  try {
    const host = name.split("@")[0]!;
    const index = readFileSync(`/sys/class/net/${host}/ifindex`, "utf8").trim();
    const own = readlinkSync("/proc/self/ns/net");
    const seen = new Map<string, string>(); // netns inode -> a pid in it
    for (const pid of procs()) {
      try {
        const ns = readlinkSync(`/proc/${pid}/ns/net`);
        if (ns !== own && !seen.has(ns)) seen.set(ns, pid);
      } catch {
        // gone or a kernel thread
      }
    }
    for (const [ns, pid] of seen) {
      let links = "";
      try {
        links = execFileSync("nsenter", ["-t", pid, "-n", "ip", "-o", "link"], {
          encoding: "utf8",
          stdio: ["ignore", "pipe", "ignore"],
        });
      } catch {
        continue;
      }
      if (!new RegExp(`@if${index}:`).test(links)) continue;
      const members = procs().filter((p) => {
        try {
          return readlinkSync(`/proc/${p}/ns/net`) === ns;
        } catch {
          return false;
        }
      });
      return `its peer is in ${ns}, the netns of ${members.map((p) => `pid ${p} (${cmdline(p).slice(0, 80)})`).join(", ")}`;
    }
    // No process is in it: a bind mount pins it, maybe in another mount namespace. Look at each
    // distinct nsfs mount once and keep the ones whose namespace holds the peer.
    const pins: string[] = [];
    const looked = new Set<string>();
    for (const pid of procs()) {
      let mntns = "";
      try {
        mntns = readlinkSync(`/proc/${pid}/ns/mnt`);
      } catch {
        continue;
      }
      let lines: string[] = [];
      try {
        lines = readFileSync(`/proc/${pid}/mountinfo`, "utf8").split("\n");
      } catch {
        continue;
      }
      for (const line of lines) {
        if (!/ - nsfs /.test(line) || !/net:\[/.test(line)) continue;
        const target = line.split(" ")[4]!;
        const key = `${line.split(" ")[3]} ${target}`; // the namespace and where it is pinned
        if (looked.has(key)) continue;
        looked.add(key);
        if (linksIn(`/proc/${pid}/root${target}`).includes(`@if${index}:`))
          pins.push(`${target} (mount ns ${mntns} of pid ${pid}, ${cmdline(pid).slice(0, 80)})`);
      }
    }
    return `no process is in its peer's netns; it is pinned by ${pins.join("; ") || "no nsfs mount found"}`;
  } catch (err) {
    return `(could not tell who holds its peer: ${(err as Error).message})`;
  }
}
