// Helpers for tests that run real CNI plugins in real network namespaces: running
// commands inside a namespace, looking at links and iptables, and removing whatever a
// crashed earlier run may have left behind.

import { execFile, spawn, type ChildProcess } from "node:child_process";
import { readFile } from "node:fs/promises";
import { createServer } from "node:net";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command; never throws for a non-zero exit (the caller looks at `code`). */
export async function run(cmd: string, args: string[], timeoutMs = 20_000): Promise<RunResult> {
  try {
    const { stdout, stderr } = await execFileAsync(cmd, args, { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: unknown; stdout?: string; stderr?: string; message: string };
    return { code: typeof e.code === "number" ? e.code : -1, stdout: e.stdout ?? "", stderr: e.stderr ?? e.message };
  }
}

/** Runs a command inside the network namespace pinned at nsPath. */
export function inNetns(nsPath: string, cmd: string, args: string[], timeoutMs?: number): Promise<RunResult> {
  return run("nsenter", [`--net=${nsPath}`, cmd, ...args], timeoutMs);
}

/** One ICMP echo to `ip`, from the host or from inside a namespace; true when answered. */
export async function ping(ip: string, fromNetns?: string): Promise<boolean> {
  const args = ["ping", "-c1", "-W2", ip];
  const r = fromNetns ? await inNetns(fromNetns, "/bin/busybox", args) : await run("/bin/busybox", args);
  return r.code === 0;
}

export async function linkExists(name: string): Promise<boolean> {
  return (await run("ip", ["link", "show", "dev", name])).code === 0;
}

/** Names of the links enslaved to `bridge` (its veth ports); [] when the bridge does not exist. */
export async function bridgePorts(bridge: string): Promise<string[]> {
  const r = await run("ip", ["-j", "link", "show", "master", bridge]);
  if (r.code !== 0 || r.stdout.trim() === "") return [];
  return (JSON.parse(r.stdout) as { ifname: string }[]).map((l) => l.ifname);
}

export async function deleteLink(name: string): Promise<void> {
  if (await linkExists(name)) await run("ip", ["link", "delete", name]);
}

/** Mount points of network namespaces (nsfs) at or under `dir`. */
export async function nsfsMountsUnder(dir: string): Promise<string[]> {
  const text = await readFile("/proc/self/mountinfo", "utf8");
  const out: string[] = [];
  for (const line of text.split("\n")) {
    const [left, right] = line.split(" - ");
    if (!left || !right) continue;
    const mountPoint = left.split(" ")[4].replace(/\\040/g, " ");
    if (right.startsWith("nsfs ") && (mountPoint === dir || mountPoint.startsWith(dir + "/"))) out.push(mountPoint);
  }
  return out;
}

/** `iptables-save` of one table. */
export async function iptablesSave(table: "nat" | "filter" | "mangle" = "nat"): Promise<string> {
  const r = await run("iptables-save", ["-t", table]);
  if (r.code !== 0) throw new Error(`iptables-save -t ${table}: ${r.stderr}`);
  return r.stdout;
}

/** Chain names declared in a table. */
export async function iptablesChains(table: "nat" | "filter" = "nat"): Promise<Set<string>> {
  const text = await iptablesSave(table);
  return new Set([...text.matchAll(/^:(\S+)/gm)].map((m) => m[1]));
}

/** Rule lines (`-A ...`) of a table that contain `needle`. */
export async function iptablesRulesMatching(needle: string, table: "nat" | "filter" = "nat"): Promise<string[]> {
  return (await iptablesSave(table)).split("\n").filter((l) => l.startsWith("-A ") && l.includes(needle));
}

/** Deletes the rules given as iptables-save lines (`-A CHAIN ...`); iptables-restore parses the quoting. */
async function deleteRules(table: string, lines: string[]): Promise<void> {
  if (lines.length === 0) return;
  const input = `*${table}\n${lines.map((l) => l.replace(/^-A /, "-D ")).join("\n")}\nCOMMIT\n`;
  await new Promise<void>((resolve, reject) => {
    const child = spawn("iptables-restore", ["--noflush", "-w"], { stdio: ["pipe", "ignore", "pipe"] });
    let err = "";
    child.stderr.on("data", (b: Buffer) => (err += b.toString()));
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve() : reject(new Error(`iptables-restore: ${err}`))));
    child.stdin.end(input);
  });
}

/**
 * Removes nat rules mentioning `needle` (left by a crashed run), and the per-container
 * CNI chains they used once nothing refers to them any more.
 */
export async function purgeNatRules(needle: string): Promise<void> {
  const text = await iptablesSave("nat");
  const lines = text.split("\n").filter((l) => l.startsWith("-A ") && l.includes(needle));
  const chains = new Set<string>();
  for (const l of lines) {
    const target = / -j (CNI-(?!HOSTPORT-)\S+)/.exec(l);
    if (target) chains.add(target[1]);
    const owner = /^-A (CNI-(?!HOSTPORT-)\S+)/.exec(l);
    if (owner) chains.add(owner[1]);
  }
  await deleteRules("nat", lines);
  for (const c of chains) {
    await run("iptables", ["-w", "-t", "nat", "-F", c]);
    await run("iptables", ["-w", "-t", "nat", "-X", c]);
  }
}

const HOSTPORT_CHAINS = ["CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-SNAT", "CNI-HOSTPORT-MASQ", "CNI-HOSTPORT-SETMARK"];

/**
 * portmap's shared chains stay after the last DEL (the plugin never removes them). Remove
 * the ones that did not exist before the test, but only while no mapping uses them, so a
 * concurrent user of portmap on this host keeps its rules.
 */
export async function removeUnusedHostportChains(existedBefore: Set<string>): Promise<void> {
  const text = await iptablesSave("nat");
  const ours = HOSTPORT_CHAINS.filter((c) => !existedBefore.has(c) && text.includes(`:${c} `));
  if (ours.length === 0) return;
  if (text.split("\n").some((l) => l.startsWith("-A CNI-HOSTPORT-DNAT "))) return; // still in use
  const jumps = text.split("\n").filter((l) => l.startsWith("-A ") && ours.some((c) => l.endsWith(`-j ${c}`)));
  await deleteRules("nat", jumps);
  for (const c of ours) await run("iptables", ["-w", "-t", "nat", "-F", c]);
  for (const c of ours) await run("iptables", ["-w", "-t", "nat", "-X", c]);
}

/** A TCP port that was free on the host a moment ago. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on("error", reject);
    srv.listen(0, "0.0.0.0", () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

export interface NetnsServer {
  stop(): Promise<void>;
}

/** Starts an HTTP server inside the namespace that answers every request with `body`. */
export async function startHttpServerInNetns(nsPath: string, port: number, body: string): Promise<NetnsServer> {
  const script = `require("http").createServer((q, s) => s.end(${JSON.stringify(body)})).listen(${port}, "0.0.0.0", () => console.log("listening"))`;
  const child: ChildProcess = spawn("nsenter", [`--net=${nsPath}`, process.execPath, "-e", script], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  await new Promise<void>((resolve, reject) => {
    let err = "";
    const timer = setTimeout(() => reject(new Error(`server in ${nsPath} did not start: ${err}`)), 10_000);
    child.stderr?.on("data", (b: Buffer) => (err += b.toString()));
    child.stdout?.on("data", (b: Buffer) => {
      if (b.toString().includes("listening")) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`server in ${nsPath} exited with ${code}: ${err}`));
    });
  });
  return {
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once("exit", () => resolve());
        child.kill("SIGKILL");
      }),
  };
}

/** GET http://host:port/ from the host, or from inside a namespace; the body, or throws. */
export async function httpGet(host: string, port: number, fromNetns?: string): Promise<string> {
  const script =
    `const r = require("http").get({ host: ${JSON.stringify(host)}, port: ${port}, path: "/", timeout: 3000 }, (res) => {` +
    ` let b = ""; res.on("data", (d) => (b += d)); res.on("end", () => process.stdout.write(b)); });` +
    ` r.on("timeout", () => r.destroy(new Error("timeout")));` +
    ` r.on("error", (e) => { console.error(e.message); process.exit(1); });`;
  const r = fromNetns
    ? await inNetns(fromNetns, process.execPath, ["-e", script])
    : await run(process.execPath, ["-e", script]);
  if (r.code !== 0) throw new Error(`GET ${host}:${port}${fromNetns ? ` from ${fromNetns}` : ""}: ${r.stderr.trim()}`);
  return r.stdout;
}
