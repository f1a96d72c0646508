// Memory of berthd and of its serving shim, PSS and RSS from /proc/PID/smaps_rollup, and the
// CPU time both spend on container create/start/stop (what a smaller heap or a lite-mode shim
// could cost). Starts a private berthd (test/helpers/daemon.ts), then:
//   1. idle: settle, measure berthd;
//   2. one pod (the pause sandbox only) run and removed: the serving shim is up; settle, measure;
//   3. N pods (default 20), each the pause sandbox and one `sleep` container, started 4 at a
//      time; the CPU time of berthd and of the shim side (shims and monitors) across the
//      containers' create+start and, later, stop+remove; settle, measure with the pods running;
//   4. a churn of M pods (default 40) run, stopped and removed 8 at once; settle, measure berthd.
// A focused run for the memory work of issue 15 (the side-by-side table with containerd is
// `npm run bench -- --compare containerd`).
//
//   node dist/bench/memory-idle.bench.js [settle seconds, default 5] [pods, default 20] [churn, default 40]
// Node flags to try instead of the defaults: BERTHD_NODE_FLAGS (berthd, read by the test helper
// instead of bin/berthd's shebang) and BERTH_SHIM_NODE_FLAGS (the serving shim, read by
// `containerd-shim-berth-v2 start`), e.g. BERTH_SHIM_NODE_FLAGS="" for none. BENCH_HEAP_SNAPSHOT=1:
// heap snapshots of berthd (see heapSnapshot).
import { readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { loadavg, memOf, shimPids, sumMem, type Mem } from "./lib/memory.js";
import { startCriEnv, type CriEnv } from "../test/helpers/cri.js";

const settleMs = Number(process.argv[2] ?? 5) * 1000;
const podCount = Number(process.argv[3] ?? 20);
const churnCount = Number(process.argv[4] ?? 40);
// Exits on SIGTERM (as PID 1 a bare `sleep` ignores it and every stop would wait the timeout out).
const SLEEPER = ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"];
const mib = (kib: number) => (kib / 1024).toFixed(1);
const fmt = (m: Mem) => `RSS ${mib(m.rssKiB).padStart(6)} MiB  PSS ${mib(m.pssKiB).padStart(6)} MiB`;

function row(label: string, m: Mem, extra = ""): void {
  console.log(`${label.padEnd(34)} ${fmt(m)}${extra}`);
}

/**
 * Where a process's PSS lies (/proc/PID/smaps): private memory (the V8 heap, malloc, stacks;
 * what the process alone costs) against its share of the node binary's pages, which every
 * node process on the machine splits (so it moves with what else runs), and the rest
 * (shared libraries, the SQLite and native addon files).
 */
function breakdown(pid: number): string {
  let smaps: string;
  try {
    smaps = readFileSync(`/proc/${pid}/smaps`, "utf8");
  } catch {
    return "";
  }
  let priv = 0;
  let nodePss = 0;
  let otherShared = 0;
  for (const block of smaps.split(/\n(?=[0-9a-f]+-[0-9a-f]+ )/)) {
    const path = block.slice(0, block.indexOf("\n")).split(/\s+/)[5] ?? "";
    const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, "m").exec(block)?.[1] ?? 0);
    const p = kb("Private_Clean") + kb("Private_Dirty");
    priv += p;
    if (path === process.execPath) nodePss += kb("Pss") - p;
    else otherShared += kb("Pss") - p;
  }
  return `  (private ${mib(priv)}, node binary's share ${mib(nodePss)}, other shared ${mib(otherShared)})`;
}

/** utime + stime of a process in ms (/proc/PID/stat; clock ticks are 100 Hz on Linux). */
function cpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) * 10;
  } catch {
    return 0;
  }
}

/** CPU time of berthd and of the shim side (summed over the processes alive now). */
function cpuNow(env: CriEnv): { daemon: number; shims: Map<number, number> } {
  return { daemon: cpuMs(env.d.pid), shims: new Map(shimPids(env.d.socket).map((p) => [p, cpuMs(p)])) };
}

/** CPU spent between two readings; shim processes that exited in between count up to `before`'s reading. */
function cpuSpent(env: CriEnv, before: ReturnType<typeof cpuNow>): string {
  const after = cpuNow(env);
  let shims = 0;
  for (const [pid, ms] of after.shims) shims += ms - (before.shims.get(pid) ?? 0);
  return `berthd ${after.daemon - before.daemon} ms, shim side ${shims} ms`;
}

/**
 * With BENCH_HEAP_SNAPSHOT=1, has berthd write a heap snapshot (idle and after the churn, each
 * after its row is measured), for a look at what stays; BERTHD_NODE_FLAGS must then include
 * --heapsnapshot-signal=SIGUSR2 (and --diagnostic-dir=DIR for where).
 */
async function heapSnapshot(pid: number): Promise<void> {
  if (!process.env.BENCH_HEAP_SNAPSHOT) return;
  console.log(`berthd ${pid}: heap snapshot`);
  await sleep(3000);
  process.kill(pid, "SIGUSR2");
  await sleep(15_000);
}

async function inBatches<T>(items: T[], width: number, fn: (x: T) => Promise<void>): Promise<void> {
  for (let i = 0; i < items.length; i += width) await Promise.all(items.slice(i, i + width).map(fn));
}

async function removePod(env: CriEnv, podSandboxId: string): Promise<void> {
  try {
    await env.d.rt.stopPodSandbox({ podSandboxId }, { deadlineMs: 120_000 });
  } finally {
    await env.d.rt.removePodSandbox({ podSandboxId }, { deadlineMs: 120_000 });
  }
}

function shimSide(env: CriEnv): { mem: Mem; count: number } {
  const pids = shimPids(env.d.socket);
  return { mem: sumMem(pids), count: pids.length };
}

async function main(): Promise<void> {
  const env = await startCriEnv({ bridge: "bmemidle0", subnet: "10.88.231.0/24" });
  const d = env.d;
  console.log(`load average at start: ${loadavg()}`);
  try {
    await sleep(settleMs);
    row("berthd idle", memOf(d.pid), breakdown(d.pid));
    await heapSnapshot(d.pid);

    await removePod(env, (await env.runPod("mem-idle")).id);
    await sleep(settleMs);
    row("berthd after one pod", memOf(d.pid), breakdown(d.pid));
    for (const pid of shimPids(d.socket)) row(`shim ${pid} idle`, memOf(pid));

    await d.img.pullImage({ image: { image: env.images.busybox } }, { deadlineMs: 120_000 });
    const names = Array.from({ length: podCount }, (_, i) => `mem-pod-${i}`);
    const pods = new Map<string, Awaited<ReturnType<CriEnv["runPod"]>>>();
    await inBatches(names, 4, async (n) => void pods.set(n, await env.runPod(n)));
    let cpu = cpuNow(env);
    const containers: string[] = [];
    await inBatches(
      names,
      4,
      async (n) => void containers.push(await env.runContainer(pods.get(n)!, "sleep", SLEEPER)),
    );
    const createStartCpu = cpuSpent(env, cpu);
    await sleep(settleMs);
    const side = shimSide(env);
    const daemonWith = memOf(d.pid);
    row(`berthd with ${podCount} pods`, daemonWith, breakdown(d.pid));
    row(`shim side with ${podCount} pods`, side.mem, `  (${side.count} processes)`);
    row(`total with ${podCount} pods`, {
      rssKiB: daemonWith.rssKiB + side.mem.rssKiB,
      pssKiB: daemonWith.pssKiB + side.mem.pssKiB,
    });
    console.log(`CPU for ${containers.length} container create+start: ${createStartCpu}`);
    cpu = cpuNow(env);
    await inBatches(containers, 4, async (containerId) => {
      await d.rt.stopContainer({ containerId, timeout: 10n }, { deadlineMs: 60_000 });
      await d.rt.removeContainer({ containerId }, { deadlineMs: 60_000 });
    });
    console.log(`CPU for ${containers.length} container stop+remove: ${cpuSpent(env, cpu)}`);
    await inBatches([...pods.values()], 4, (p) => removePod(env, p.id));

    const churn = Array.from({ length: churnCount }, (_, i) => `mem-churn-${i}`);
    cpu = cpuNow(env);
    await inBatches(churn, 8, async (n) => removePod(env, (await env.runPod(n)).id));
    console.log(`CPU for a ${churnCount}-pod churn: ${cpuSpent(env, cpu)}`);
    await sleep(settleMs);
    row(`berthd after a ${churnCount}-pod churn`, memOf(d.pid), breakdown(d.pid));
    await heapSnapshot(d.pid);
    for (const pid of shimPids(d.socket)) row(`shim ${pid} after the churn`, memOf(pid));
    console.log(`load average at end: ${loadavg()}`);
  } finally {
    try {
      await env.stop();
    } finally {
      await env.images.stop(); // the shared registry, or node stays up after the run
    }
  }
}

await main();
