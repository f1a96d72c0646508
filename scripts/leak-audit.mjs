#!/usr/bin/env node
// Machine-wide audit of what berth's tests may leave behind: "after the test suite no netns,
// veth, IP allocation, mount, shim or cgroup of berth's remains". run-tests.mjs takes a snapshot
// before a full run and another after it, and fails the run on anything new.
//
// Each test file checks its own daemon's leftovers (test/helpers/leaks.ts); this catches what
// falls between files: a helper that forgot a bridge, a registry or shim that outlived its test,
// an iptables rule for a test subnet, a cgroup runc never removed.
//
// A berthd started by the README's set-up (state under /run/berth, /var/lib/berth) is not a
// leak: its processes, its pods' cgroups under /berth and its berth0 bridge are left alone.
//
//   node scripts/leak-audit.mjs          prints what is there now, exits 1 if anything
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const TMP_PREFIX = join(tmpdir(), "berth-");
/** What the tests name their things: private dirs, bridges, cgroup parents. */
const TEST_SUBNETS = /\b10\.23[4-7]\.\d+\.\d+/;
const SYSTEM_DIRS = ["/run/berth/", "/var/lib/berth", "/run/berth-shim/"];
const BERTH_PROGRAMS = /containerd-shim-berth-v2|berth-monitor|berth-pause|bin\/berthd\b|dist\/src\/daemon\/main\.js/;

function sh(cmd, args) {
  try {
    return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
  } catch {
    return "";
  }
}

function systemDaemonRunning() {
  try {
    const pid = Number(readFileSync("/run/berth/berthd.pid", "utf8").trim());
    return pid > 0 && existsSync(`/proc/${pid}`);
  } catch {
    return false;
  }
}

function processes(self) {
  const out = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name) || self.has(Number(name))) continue;
    let cmd;
    try {
      cmd = readFileSync(`/proc/${name}/cmdline`, "utf8").replaceAll("\0", " ").trim();
    } catch {
      continue;
    }
    if (!cmd) continue;
    const berthish = BERTH_PROGRAMS.test(cmd) || cmd.includes(TMP_PREFIX);
    if (!berthish) continue;
    if (SYSTEM_DIRS.some((d) => cmd.includes(d)) && !cmd.includes(TMP_PREFIX)) continue;
    out.push(`process ${name}: ${cmd.slice(0, 160)}`);
  }
  return out;
}

/** Our own ancestry (the test runner may live in a directory named berth). */
function ancestors() {
  const pids = new Set();
  let pid = process.pid;
  while (pid > 1 && !pids.has(pid)) {
    pids.add(pid);
    try {
      pid = Number(readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ")[1]);
    } catch {
      break;
    }
  }
  return pids;
}

function mounts() {
  const out = [];
  for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
    const f = line.split(" ");
    if (f.length < 5) continue;
    const mp = f[4].replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8)));
    if (mp.startsWith(TMP_PREFIX) || (/\/berth/.test(mp) && !SYSTEM_DIRS.some((d) => mp.startsWith(d))))
      out.push(`mount ${mp}`);
  }
  return out;
}

function links() {
  const out = [];
  for (const line of sh("ip", ["-o", "link", "show"]).split("\n")) {
    const m = /^\d+:\s+([^:@\s]+)(?:@[^:]+)?:.*?(?:master (\S+))?/.exec(line);
    if (!m) continue;
    const name = m[1];
    const master = /master (\S+)/.exec(line)?.[1];
    // berth0 is the default network of a README-started berthd.
    if (name.startsWith("berth") && name !== "berth0") out.push(`link ${name}`);
    else if (master && master.startsWith("berth") && master !== "berth0") out.push(`veth ${name} on ${master}`);
  }
  return out;
}

function netns() {
  return sh("ip", ["netns", "list"])
    .split("\n")
    .filter((l) => /berth|cni-/.test(l))
    .map((l) => `netns ${l.split(" ")[0]}`);
}

function iptables() {
  return sh("iptables-save", [])
    .split("\n")
    .filter((l) => l.startsWith("-A") && TEST_SUBNETS.test(l))
    .map((l) => `iptables ${l}`);
}

/** Every cgroup below a top-level berth* directory (the top one itself is a shared parent). */
function cgroups(systemDaemon) {
  const out = [];
  // Returns whether the subtree at `dir` holds a process.
  const walk = (dir, rel) => {
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return false;
    }
    let anyBusy = false;
    for (const e of entries) {
      if (!e.isDirectory()) continue;
      const p = join(dir, e.name);
      const r = `${rel}/${e.name}`;
      let procs = "";
      try {
        procs = readFileSync(join(p, "cgroup.procs"), "utf8").trim();
      } catch {
        // a controller without cgroup.procs at this level
      }
      const busy = walk(p, r) || procs !== "";
      anyBusy ||= busy;
      // A system berthd's running pods live under /berth (a pod cgroup holds its containers'
      // cgroups); a subtree with no process is garbage whoever made it (runc removes the
      // cgroups of the containers it deletes, berthd the pod cgroups it made).
      if (!(systemDaemon && r.startsWith("/berth/") && busy)) out.push(`cgroup ${p}${busy ? " (has processes)" : ""}`);
    }
    return anyBusy;
  };
  let controllers = [];
  try {
    controllers = readdirSync("/sys/fs/cgroup");
  } catch {
    return out;
  }
  for (const c of controllers) {
    const base = join("/sys/fs/cgroup", c);
    let tops = [];
    try {
      if (!statSync(base).isDirectory()) continue;
      tops = readdirSync(base).filter((n) => n.startsWith("berth"));
    } catch {
      continue;
    }
    for (const t of tops) walk(join(base, t), `/${t}`);
  }
  return out;
}

/** host-local allocations in its default data directory (a test's own dataDir is a temp dir). */
function ipAllocations(systemDaemon) {
  const base = "/var/lib/cni/networks";
  const out = [];
  let nets = [];
  try {
    nets = readdirSync(base);
  } catch {
    return out;
  }
  for (const net of nets) {
    // berth-default is the network of a README-started berthd.
    if (systemDaemon && net === "berth-default") continue;
    try {
      for (const f of readdirSync(join(base, net)))
        if (/^\d+\.\d+\.\d+\.\d+$/.test(f) || /^[0-9a-f]*:[0-9a-f:]+$/.test(f)) out.push(`IP allocation ${net}/${f}`);
    } catch {
      // not a directory
    }
  }
  return out;
}

function tempDirs() {
  const dir = tmpdir();
  return readdirSync(dir)
    .filter((n) => n.startsWith("berth-"))
    .map((n) => `temp ${join(dir, n)}`);
}

/** Everything berth-related on the machine now, one line each. */
export function audit() {
  const system = systemDaemonRunning();
  return [
    ...processes(ancestors()),
    ...mounts(),
    ...netns(),
    ...links(),
    ...iptables(),
    ...cgroups(system),
    ...ipAllocations(system),
    ...tempDirs(),
  ].sort();
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const found = audit();
  for (const f of found) console.log(f);
  process.exit(found.length > 0 ? 1 : 0);
}
