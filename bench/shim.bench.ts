// Shim memory and start latency, berth's shim vs containerd-shim-runc-v2, driven the same
// way: `start` in the bundle (cwd), then ttrpc Create + Start, pods of two containers
// sharing the io.kubernetes.cri.sandbox-id annotation. Memory is PSS (and RSS) from
// /proc/PID/smaps_rollup summed over the shim processes: berth's serving shim plus its
// monitors, or every containerd-shim-runc-v2 (one per pod). Container processes excluded.
//
//   node dist/bench/shim.bench.js [pods...]      (default 1 5 20)
import { execFileSync, spawnSync } from "node:child_process";
import { closeSync, constants, mkdtempSync, openSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";

import { Options } from "../src/gen/containerd/runc/options/oci.js";
import { TaskDefinition } from "../src/gen/containerd/runtime/v2/task/shim.js";
import { TtrpcClient, createClient, type ServiceClient } from "../src/ttrpc/index.js";
import { makeBundle } from "../test/helpers/bundle.js";
import { REPO, ensureMonitor } from "../test/helpers/shim.js";

type Task = ServiceClient<typeof TaskDefinition>;

interface Flavor {
  name: string;
  bin: string;
  /** cmdline marker of its processes */
  match: (cmd: string, root: string) => boolean;
}

const flavors: Flavor[] = [
  {
    name: "berth",
    bin: join(REPO, "bin/containerd-shim-berth-v2"),
    match: (cmd, root) => cmd.includes(root) && (cmd.includes("-berth-serve") || cmd.includes("berth-monitor")),
  },
  {
    name: "runc-v2",
    bin: "containerd-shim-runc-v2",
    match: (cmd, root) =>
      cmd.startsWith("containerd-shim-runc-v2") || (cmd.includes("containerd-shim-runc-v2") && cmd.includes(root)),
  },
];

function memOf(pid: number): { pss: number; rss: number } {
  try {
    const t = readFileSync(`/proc/${pid}/smaps_rollup`, "utf8");
    const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, "m").exec(t)?.[1] ?? 0);
    return { pss: kb("Pss"), rss: kb("Rss") };
  } catch {
    return { pss: 0, rss: 0 };
  }
}

function processes(f: Flavor, root: string): number[] {
  const out: number[] = [];
  for (const n of readdirSync("/proc")) {
    if (!/^\d+$/.test(n)) continue;
    let cmd = "";
    try {
      cmd = readFileSync(`/proc/${n}/cmdline`, "utf8").replace(/\0/g, " ");
    } catch {
      continue;
    }
    if (f.match(cmd, root) && (f.name === "berth" || cmd.includes(`-address ${root}`))) out.push(Number(n));
  }
  return out;
}

interface Result {
  flavor: string;
  pods: number;
  pssKiB: number;
  rssKiB: number;
  procs: number;
  firstStartMs: number[];
  laterStartMs: number[];
}

async function run(f: Flavor, pods: number): Promise<Result> {
  const root = mkdtempSync(`/tmp/berth-bench-${f.name}-`);
  const address = join(root, "containerd.sock");
  const env = { ...process.env, BERTH_SHIM_SOCKET_DIR: join(root, "shim"), TTRPC_ADDRESS: join(root, "events.sock") };
  const ns = "bench";
  const md = { metadata: { "containerd-namespace-ttrpc": ns } };
  const options = {
    typeUrl: "containerd.runc.v1.Options",
    value: Buffer.from(Options.encode(Options.fromPartial({ root: join(root, "runc") })).finish()),
  };
  const clients = new Map<string, { conn: TtrpcClient; task: Task }>();
  const res: Result = { flavor: f.name, pods, pssKiB: 0, rssKiB: 0, procs: 0, firstStartMs: [], laterStartMs: [] };
  const ids: { id: string; addr: string }[] = [];
  const logReaders: number[] = [];
  try {
    for (let p = 0; p < pods; p++) {
      for (let c = 0; c < 2; c++) {
        const id = `pod${p}-c${c}`;
        const dir = join(root, id);
        makeBundle(dir, {
          args: ["sleep", "100000"],
          annotations: { "io.kubernetes.cri.sandbox-id": `pod${p}` },
          cgroupsPath: `/berth-bench/${f.name}-${id}`,
        });
        // containerd opens the shim log fifo before `start`; do the same (non-blocking, and
        // never read: a blocking fifo open would sit in libuv's threadpool until a writer came)
        execFileSync("mkfifo", [join(dir, "log")]);
        logReaders.push(openSync(join(dir, "log"), constants.O_RDONLY | constants.O_NONBLOCK));
        const t0 = performance.now();
        const s = spawnSync(
          f.bin,
          ["-namespace", ns, "-address", address, "-publish-binary", "/usr/bin/containerd", "-id", id, "start"],
          { cwd: dir, env, encoding: "utf8" },
        );
        const ms = performance.now() - t0;
        if (s.status !== 0) throw new Error(`${f.name} start: ${s.stderr}`);
        let addr = s.stdout.trim();
        if (addr.startsWith("{")) addr = (JSON.parse(addr) as { address: string }).address;
        const isNew = !clients.has(addr);
        (isNew ? res.firstStartMs : res.laterStartMs).push(ms);
        if (isNew) {
          const conn = await TtrpcClient.connect(addr);
          clients.set(addr, { conn, task: createClient(TaskDefinition, conn) });
        }
        const { task } = clients.get(addr)!;
        await task.create(
          {
            id,
            bundle: dir,
            rootfs: [],
            terminal: false,
            stdin: "",
            stdout: "",
            stderr: "",
            checkpoint: "",
            parentCheckpoint: "",
            options,
          },
          md,
        );
        await task.start({ id, execId: "" }, md);
        ids.push({ id, addr });
      }
    }
    await new Promise((r) => setTimeout(r, 1000));
    const pids = processes(f, root);
    res.procs = pids.length;
    for (const pid of pids) {
      const m = memOf(pid);
      res.pssKiB += m.pss;
      res.rssKiB += m.rss;
    }
  } finally {
    for (const { id, addr } of ids) {
      const { task } = clients.get(addr)!;
      await task.kill({ id, execId: "", signal: 9, all: true }, md).catch(() => {});
      await task.wait({ id, execId: "" }, md).catch(() => {});
      await task.delete({ id, execId: "" }, md).catch(() => {});
    }
    for (const { task, conn } of clients.values()) {
      await task.shutdown({ id: "", now: true }, md).catch(() => {});
      conn.close();
    }
    await new Promise((r) => setTimeout(r, 500));
    for (const pid of processes(f, root)) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // gone
      }
    }
    for (const fd of logReaders) closeSync(fd);
    for (const id of spawnSync("runc", ["--root", join(root, "runc"), "list", "-q"], { encoding: "utf8" })
      .stdout?.split("\n")
      .filter(Boolean) ?? []) {
      spawnSync("runc", ["--root", join(root, "runc"), "delete", "-f", id]);
    }
    rmSync(root, { recursive: true, force: true });
  }
  return res;
}

const mib = (kib: number) => (kib / 1024).toFixed(2);
const avg = (xs: number[]) => (xs.length ? (xs.reduce((a, b) => a + b, 0) / xs.length).toFixed(0) : "-");

async function main(): Promise<void> {
  ensureMonitor();
  const counts = process.argv
    .slice(2)
    .map(Number)
    .filter((n) => n > 0);
  const podCounts = counts.length ? counts : [1, 5, 20];
  const rows: Result[] = [];
  for (const pods of podCounts) for (const f of flavors) rows.push(await run(f, pods));
  console.log("shim memory per pod (2 containers each), PSS/RSS from /proc/PID/smaps_rollup, MiB");
  console.log(
    "pods | shim        | procs | PSS total | PSS/pod | RSS total | RSS/pod | start new shim ms | start existing ms",
  );
  for (const r of rows) {
    console.log(
      [
        String(r.pods).padStart(4),
        r.flavor.padEnd(11),
        String(r.procs).padStart(5),
        mib(r.pssKiB).padStart(9),
        mib(r.pssKiB / r.pods).padStart(7),
        mib(r.rssKiB).padStart(9),
        mib(r.rssKiB / r.pods).padStart(7),
        avg(r.firstStartMs).padStart(17),
        avg(r.laterStartMs).padStart(17),
      ].join(" | "),
    );
  }
}

await main();
