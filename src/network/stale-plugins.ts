// CNI plugins a previous berthd started and never saw finish. berthd runs each plugin in a
// process group of its own (cni/invoke.ts), so a SIGKILL of berthd does not take its plugins
// along: an ADD still running then completes after the restarted berthd has rolled the pod
// back (DEL, netns removed, record gone), reserving an IP and making links for a pod that no
// longer exists, and nothing would ever release them. So at start, before recovery tears any
// pod network down, such plugins are killed (their whole group: host-local runs as a child);
// the DEL recovery then runs cleans up whatever half an ADD they had done, as the CNI spec
// requires DEL to.
//
// A plugin is recognised by its environment: CNI_COMMAND set and CNI_NETNS naming a file in
// this berthd's netns directory, which no other runtime (or berthd) uses.
import { readdir, readFile } from "node:fs/promises";
import { sleep } from "../util/sleep.js";

export interface StalePlugin {
  pid: number;
  command: string;
  containerId: string;
  netns: string;
}

function envOf(raw: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const kv of raw.split("\0")) {
    const eq = kv.indexOf("=");
    if (eq > 0) out.set(kv.slice(0, eq), kv.slice(eq + 1));
  }
  return out;
}

/** The process group and state of `pid` (from /proc/PID/stat, past the command name), or undefined when gone. */
async function stat(pid: number): Promise<{ state: string; pgrp: number } | undefined> {
  try {
    const s = await readFile(`/proc/${pid}/stat`, "utf8");
    const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
    return { state: f[0] ?? "", pgrp: Number(f[2]) };
  } catch {
    return undefined;
  }
}

/** CNI plugin processes whose CNI_NETNS is a file in `netnsDir`. */
export async function findStalePlugins(netnsDir: string): Promise<StalePlugin[]> {
  const prefix = `${netnsDir.replace(/\/+$/, "")}/`;
  const out: StalePlugin[] = [];
  for (const name of await readdir("/proc")) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    let env: Map<string, string>;
    try {
      env = envOf(await readFile(`/proc/${name}/environ`, "utf8"));
    } catch {
      continue; // gone meanwhile, or a kernel thread
    }
    const netns = env.get("CNI_NETNS") ?? "";
    const command = env.get("CNI_COMMAND");
    if (!command || !netns.startsWith(prefix)) continue;
    out.push({ pid: Number(name), command, containerId: env.get("CNI_CONTAINERID") ?? "", netns });
  }
  return out;
}

/**
 * Kills the plugins a previous berthd left running (each one's group when it leads one, as
 * berth starts them) and waits until they are gone (a zombie counts as gone), at most
 * `waitMs` in all (a process stuck in the kernel cannot hold berthd's start forever).
 * Returns them.
 */
export async function killStalePlugins(netnsDir: string, waitMs = 10_000): Promise<StalePlugin[]> {
  const found = await findStalePlugins(netnsDir);
  for (const p of found) {
    const st = await stat(p.pid);
    if (!st) continue;
    try {
      // SIGKILL also ends a plugin that is stopped (SIGSTOP) or blocked.
      process.kill(st.pgrp === p.pid ? -p.pid : p.pid, "SIGKILL");
    } catch {
      // exited meanwhile
    }
  }
  const deadline = Date.now() + waitMs;
  for (const p of found) {
    for (;;) {
      const st = await stat(p.pid);
      if (!st || st.state === "Z" || Date.now() > deadline) break;
      await sleep(10);
    }
  }
  return found;
}
