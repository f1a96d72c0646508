// "Nothing of berth's remains": lists what a berthd (its private dir, root, state and socket)
// and the pods it ran left on the machine. Empty when all is clean.
//
//   const left = leaks({ dir: d.dir, root: d.root, state: d.state, socket: d.socket,
//                        bridge: "berthrel0", ids, excludePids: [d.pid] });
//   assert.deepEqual(left, []);
//
// Checked: mounts under the dir/root/state, netns files, veths on the test bridge,
// host-local IP allocations, processes whose command line names the daemon's dirs or socket
// (shims, monitors, runc, pause), cgroups named after the given ids under any
// /sys/fs/cgroup/<controller>/berth*, bundles and other paths named after the ids anywhere
// below the dir, and temporary files (ingests, *.tmp) below the root.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, lstatSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { vethPeerHolders } from "./veth-holder.js";

export interface LeakScope {
  /** The daemon's private directory (holds root, state, socket, runc roots, ipam). */
  dir: string;
  root: string;
  state: string;
  socket: string;
  /** The test's CNI bridge: nothing may stay attached to it. */
  bridge?: string;
  /** host-local's dataDir (default <dir>/ipam). */
  ipamDir?: string;
  /** Pod and container ids the test created: no cgroup, bundle or path may carry them. */
  ids?: Iterable<string>;
  /**
   * Processes allowed to name the dirs (a still-running berthd). With any, the directories a
   * running berthd is still deleting in the background (its trash, removed snapshots) are not
   * reported; without, nothing may be left there (a stopped berthd waits for them).
   */
  excludePids?: number[];
  /** Interrupted content ingests are resumable by design (after a crash): do not report them. */
  allowIngests?: boolean;
}

function decodeMountPath(p: string): string {
  return p.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

function mounts(prefixes: string[]): string[] {
  const out: string[] = [];
  for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
    const f = line.split(" ");
    if (f.length < 5) continue;
    const mp = decodeMountPath(f[4]!);
    if (prefixes.some((p) => mp === p || mp.startsWith(`${p}/`))) out.push(`mount ${mp}`);
  }
  return out;
}

/** Processes whose argv mentions one of `needles` (other than ourselves and `exclude`). */
export function processesNaming(needles: string[], exclude: number[] = []): { pid: number; cmd: string }[] {
  const out: { pid: number; cmd: string }[] = [];
  const skip = new Set([process.pid, ...exclude]);
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    if (skip.has(pid)) continue;
    let cmd: string;
    try {
      cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ").trim();
    } catch {
      continue; // gone meanwhile
    }
    if (!cmd) continue; // a zombie or kernel thread
    if (needles.some((n) => cmd.includes(n))) out.push({ pid, cmd });
  }
  return out;
}

/** Every path below `dir` (not following symlinks, to `depth` levels) whose name is in `names`. */
function pathsNamed(dir: string, names: Set<string>, depth: number, out: string[]): void {
  if (depth < 0) return;
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return;
  }
  for (const e of entries) {
    const p = join(dir, e);
    if (names.has(e) || [...names].some((n) => e.startsWith(`${n}.`) || e.startsWith(`${n}-`))) out.push(`path ${p}`);
    try {
      if (lstatSync(p).isDirectory()) pathsNamed(p, names, depth - 1, out);
    } catch {
      // gone meanwhile
    }
  }
}

function tempFiles(dir: string, depth: number, out: string[]): void {
  if (depth < 0) return;
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return;
  }
  for (const e of entries) {
    const p = join(dir, e);
    if (/\.tmp($|[.-])|^\.tmp|\.partial$|^tmp-/.test(e)) out.push(`temp file ${p}`);
    try {
      if (lstatSync(p).isDirectory()) tempFiles(p, depth - 1, out);
    } catch {
      // gone meanwhile
    }
  }
}

export function leaks(s: LeakScope): string[] {
  const out: string[] = [];
  out.push(...mounts([s.dir, s.root, s.state]));

  const netnsDir = join(s.state, "netns");
  if (existsSync(netnsDir)) for (const f of readdirSync(netnsDir)) out.push(`netns ${join(netnsDir, f)}`);

  if (s.bridge) {
    try {
      const links = execFileSync("ip", ["-o", "link", "show", "master", s.bridge], {
        encoding: "utf8",
        stdio: ["ignore", "pipe", "ignore"],
      }).trim();
      for (const l of links.split("\n").filter(Boolean)) {
        const name = l.split(":")[1]?.trim() ?? "";
        out.push(`veth on ${s.bridge}: ${name} (${vethPeerHolders(name)})`);
      }
    } catch {
      // no bridge: nothing attached
    }
  }

  const ipam = s.ipamDir ?? join(s.dir, "ipam");
  if (existsSync(ipam)) {
    for (const net of readdirSync(ipam)) {
      const nd = join(ipam, net);
      if (!lstatSync(nd).isDirectory()) continue;
      for (const f of readdirSync(nd))
        if (/^\d+\.\d+\.\d+\.\d+$/.test(f) || (f.includes(":") && /^[0-9a-f:]+$/.test(f)))
          out.push(`IP allocation ${net}/${f}`);
    }
  }

  for (const p of processesNaming([s.dir, s.root, s.state, s.socket], s.excludePids))
    out.push(`process ${p.pid}: ${p.cmd}`);

  const ids = new Set(s.ids ?? []);
  if (ids.size > 0) {
    for (const ctl of readdirSync("/sys/fs/cgroup")) {
      const base = join("/sys/fs/cgroup", ctl);
      let tops: string[];
      try {
        tops = readdirSync(base).filter((n) => n.startsWith("berth"));
      } catch {
        continue;
      }
      for (const t of tops) {
        const found: string[] = [];
        pathsNamed(join(base, t), ids, 2, found);
        for (const f of found) out.push(`cgroup ${f.slice("path ".length)}`);
      }
    }
    pathsNamed(s.dir, ids, 7, out);
  }

  tempFiles(s.root, 4, out);
  if (!s.excludePids?.length) out.push(...pendingRemovals(s.root, s.state));
  if (!s.allowIngests) {
    for (const ingest of findDirs(s.root, "ingest", 3))
      for (const f of readdirSync(ingest)) out.push(`ingest ${join(ingest, f)}`);
  }
  return [...new Set(out)];
}

/** What berthd deletes in the background: its trash (cri/trash.ts) and snapshots moved away (removed-*). */
function pendingRemovals(root: string, state: string): string[] {
  const out: string[] = [];
  const trash = join(state, "trash");
  if (existsSync(trash)) for (const f of readdirSync(trash)) out.push(`trash entry ${join(trash, f)}`);
  const snapshotters = join(root, "snapshots");
  if (existsSync(snapshotters)) {
    for (const sn of readdirSync(snapshotters)) {
      const d = join(snapshotters, sn);
      if (!lstatSync(d).isDirectory()) continue;
      for (const f of readdirSync(d)) if (f.startsWith("removed-")) out.push(`removed snapshot ${join(d, f)}`);
    }
  }
  return out;
}

/** Directories named `name` below `dir` (to `depth` levels, not following symlinks). */
export function findDirs(dir: string, name: string, depth: number): string[] {
  const out: string[] = [];
  const walk = (d: string, left: number) => {
    if (left < 0) return;
    let entries: string[];
    try {
      entries = readdirSync(d);
    } catch {
      return;
    }
    for (const e of entries) {
      const p = join(d, e);
      let isDir = false;
      try {
        isDir = lstatSync(p).isDirectory();
      } catch {
        continue;
      }
      if (!isDir) continue;
      if (e === name) out.push(p);
      else walk(p, left - 1);
    }
  };
  walk(dir, depth);
  return out;
}

/** Every committed blob below `root` (any blobs/sha256 dir) whose content does not hash to its name. */
export function corruptBlobs(root: string): { checked: number; bad: string[] } {
  const bad: string[] = [];
  let checked = 0;
  for (const blobs of findDirs(root, "blobs", 3)) {
    const dir = join(blobs, "sha256");
    if (!existsSync(dir)) continue;
    for (const hex of readdirSync(dir)) {
      checked++;
      const got = createHash("sha256")
        .update(readFileSync(join(dir, hex)))
        .digest("hex");
      if (got !== hex) bad.push(join(dir, hex));
    }
  }
  return { checked, bad };
}

/** The idle shim a running berthd keeps warm for its next pod (by design, not a leak). */
export function warmShims(d: { socket: string; pid: number }): number[] {
  return servingShims(d).map((p) => p.pid);
}

/** The serving shims of berthd `d` (pid and command line). */
function servingShims(d: { socket: string; pid: number }): { pid: number; cmd: string }[] {
  return processesNaming([d.socket], [d.pid]).filter((p) => p.cmd.includes("-berth-serve"));
}

/**
 * Waits until `d` has at most its one warm shim, and returns the serving shims then (pid and
 * command line, for an assertion's message). Waited for, bounded: a shim that emptied unlinks
 * its socket before it exits (its close takes up to 1 s), so a fresh one may already serve
 * meanwhile; and a serving shim with no task and no client exits after its idle time (60 s).
 */
export async function settledWarmShims(d: { socket: string; pid: number }): Promise<{ pid: number; cmd: string }[]> {
  const deadline = Date.now() + 90_000;
  while (servingShims(d).length > 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
  return servingShims(d);
}

/** What a still-running berthd `d` left of the pods and containers `ids` (its warm shim allowed). */
export function daemonLeaks(
  d: { dir: string; root: string; state: string; socket: string; pid: number },
  opts: { bridge?: string; ids?: Iterable<string>; allowIngests?: boolean } = {},
): string[] {
  return leaks({
    dir: d.dir,
    root: d.root,
    state: d.state,
    socket: d.socket,
    bridge: opts.bridge,
    ids: opts.ids,
    excludePids: [d.pid, ...warmShims(d)],
    allowIngests: opts.allowIngests,
  });
}
