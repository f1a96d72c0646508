// Starting programs from a big Node process: child_process (fork + exec) against berth's
// native spawn (src/sys/spawn.ts: posix_spawn, i.e. clone(CLONE_VM|CLONE_VFORK), and a pidfd
// on the event loop), issue 15 item 4.
//
//   (a) in this process, grown to ~50 and ~150 MiB RSS: the time the spawn call blocks the
//       event loop, spawn-to-exit wall time of /bin/true and our CPU per spawn;
//   (b) through the CRI, a private berthd (real shim, runc, CNI) started with
//       BERTH_SPAWN=child_process and then with the native spawn, one after the other:
//       RunPodSandbox and StopPodSandbox alone, then 20 pods at once; with the CPU time berthd
//       and its shim spent.
//
// Run: npx tsc -p tsconfig.json && node dist/bench/spawn.bench.js [--micro-only] [--rounds N]
// The machine is shared: rounds alternate the two ways, and /proc/loadavg is printed with each.
import { spawn as cpSpawn } from "node:child_process";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { monitorEventLoopDelay } from "node:perf_hooks";

import { spawnChild } from "../src/sys/spawn.js";
import { startCriEnv, testImages, type CriEnv } from "../test/helpers/cri.js";
import { loadavg, shimPids } from "./lib/memory.js";
import { median, percentile } from "./lib/stats.js";

const MiB = 1 << 20;
const args = process.argv.slice(2);
const microOnly = args.includes("--micro-only");
const rounds = Number(args[args.indexOf("--rounds") + 1] ?? 0) || 2;
const SPAWNS = 200;
const SEQUENTIAL_PODS = 8;
const CONCURRENT = 20;

type Way = "child_process" | "native";
const WAYS: Way[] = ["child_process", "native"];

// ---------------------------------------------------------------------------------------
// (a) in process

const ballast: Buffer[] = [];

/** Grows RSS to about `mib` with touched (zero-filled) memory, as a daemon's heap would be. */
function growTo(mib: number): number {
  for (;;) {
    const rss = process.memoryUsage().rss;
    if (rss >= mib * MiB) return rss / MiB;
    ballast.push(Buffer.alloc(Math.min(8 * MiB, mib * MiB - rss + MiB), 1));
  }
}

interface Sample {
  blockMs: number;
  wallMs: number;
}

async function spawnTrue(way: Way): Promise<Sample> {
  const t0 = performance.now();
  if (way === "native") {
    const c = spawnChild("/bin/true", [], { stdio: ["ignore", "ignore", "ignore"] });
    const t1 = performance.now();
    await c.exited;
    return { blockMs: t1 - t0, wallMs: performance.now() - t0 };
  }
  const c = cpSpawn("/bin/true", [], { stdio: "ignore" });
  const t1 = performance.now();
  await once(c, "exit");
  return { blockMs: t1 - t0, wallMs: performance.now() - t0 };
}

interface MicroResult {
  samples: Sample[];
  cpuUsPerSpawn: number;
  loopDelayP99Ms: number;
  loopDelayMaxMs: number;
}

async function micro(way: Way, n: number): Promise<MicroResult> {
  const h = monitorEventLoopDelay({ resolution: 1 });
  const cpu0 = process.cpuUsage();
  h.enable();
  const samples: Sample[] = [];
  for (let i = 0; i < n; i++) samples.push(await spawnTrue(way));
  h.disable();
  const cpu = process.cpuUsage(cpu0);
  return {
    samples,
    cpuUsPerSpawn: (cpu.user + cpu.system) / n,
    loopDelayP99Ms: h.percentile(99) / 1e6,
    loopDelayMaxMs: h.max / 1e6,
  };
}

async function microAll(): Promise<void> {
  console.log(`(a) /bin/true spawned ${SPAWNS * rounds} times each way, one at a time (medians; p99)`);
  for (const target of [50, 150]) {
    const rss = growTo(target);
    for (const w of WAYS) await micro(w, 20); // warm up both
    const acc = new Map<Way, MicroResult[]>(WAYS.map((w) => [w, []]));
    const load = loadavg();
    for (let r = 0; r < rounds; r++) for (const w of WAYS) acc.get(w)!.push(await micro(w, SPAWNS));
    for (const w of WAYS) {
      const rs = acc.get(w)!;
      const s = rs.flatMap((x) => x.samples);
      const block = s.map((x) => x.blockMs);
      const wall = s.map((x) => x.wallMs);
      console.log(
        `  RSS ${rss.toFixed(0).padStart(3)} MiB  ${w.padEnd(13)}` +
          `  spawn call blocks ${median(block).toFixed(3)} ms (p99 ${percentile(block, 99).toFixed(3)})` +
          `  spawn-to-exit ${median(wall).toFixed(3)} ms (p99 ${percentile(wall, 99).toFixed(3)})` +
          `  our CPU ${(rs.reduce((a, x) => a + x.cpuUsPerSpawn, 0) / rs.length / 1000).toFixed(3)} ms/spawn` +
          `  loop delay p99 ${Math.max(...rs.map((x) => x.loopDelayP99Ms)).toFixed(2)} ms` +
          `  max ${Math.max(...rs.map((x) => x.loopDelayMaxMs)).toFixed(2)} ms` +
          `  [load ${load}]`,
      );
    }
  }
  ballast.length = 0;
}

// ---------------------------------------------------------------------------------------
// (b) through the CRI

/** utime + stime of a process in ms (0 when gone). */
function cpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return ((Number(f[11]) + Number(f[12])) * 1000) / 100; // clock ticks, USER_HZ 100
  } catch {
    return 0;
  }
}

const environ = (pid: number) => readFileSync(`/proc/${pid}/environ`, "utf8");
const cmdline = (pid: number) => readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ");

interface PodRound {
  run: number[];
  stop: number[];
  concRun: number;
  concStop: number;
  berthdCpuMs: number;
  shimCpuMs: number;
  pods: number;
  load: string;
}

async function time<T>(fn: () => Promise<T>): Promise<[number, T]> {
  const t0 = performance.now();
  const v = await fn();
  return [performance.now() - t0, v];
}

async function podRound(way: Way, r: number): Promise<PodRound> {
  if (way === "child_process") process.env.BERTH_SPAWN = "child_process";
  else delete process.env.BERTH_SPAWN;
  const n = WAYS.indexOf(way);
  // berthd (and the shim it starts) read BERTH_SPAWN from the environment they inherit
  const env: CriEnv = await startCriEnv({ bridge: `berthspawn${n}`, subnet: `10.234.${213 + n}.0/24` });
  delete process.env.BERTH_SPAWN;
  const rt = env.d.rt;
  const stopRemove = async (id: string) => {
    await rt.stopPodSandbox({ podSandboxId: id }, { deadlineMs: 120_000 });
    await rt.removePodSandbox({ podSandboxId: id }, { deadlineMs: 120_000 });
  };
  try {
    // warm-up: the shim starts, the pause image unpacks
    await stopRemove((await env.runPod(`warm-${r}`)).id);
    const shims = shimPids(env.d.socket);
    if (shims.length === 0) throw new Error("no serving shim found after the warm-up pod");
    // the way each process really uses: BERTH_SPAWN as its environment holds it
    for (const pid of [env.d.pid, ...shims.filter((p) => !/berth-monitor/.test(cmdline(p)))]) {
      const seen = /(?:^|\0)BERTH_SPAWN=child_process(?:\0|$)/.test(environ(pid)) ? "child_process" : "native";
      if (seen !== way) throw new Error(`process ${pid} (${cmdline(pid)}) spawns the ${seen} way, not ${way}`);
    }
    const cpu0 = cpuMs(env.d.pid);
    const shimCpu0 = shims.reduce((a, p) => a + cpuMs(p), 0);
    const load = loadavg();
    const run: number[] = [];
    const stop: number[] = [];
    for (let i = 0; i < SEQUENTIAL_PODS; i++) {
      const [ms, pod] = await time(() => env.runPod(`seq-${r}-${i}`));
      run.push(ms);
      stop.push((await time(() => rt.stopPodSandbox({ podSandboxId: pod.id }, { deadlineMs: 120_000 })))[0]);
      await rt.removePodSandbox({ podSandboxId: pod.id }, { deadlineMs: 120_000 });
    }
    const [concRun, pods] = await time(() =>
      Promise.all(Array.from({ length: CONCURRENT }, (_, i) => env.runPod(`conc-${r}-${i}`))),
    );
    const [concStop] = await time(() =>
      Promise.all(pods.map((p) => rt.stopPodSandbox({ podSandboxId: p.id }, { deadlineMs: 120_000 }))),
    );
    for (const p of pods) await rt.removePodSandbox({ podSandboxId: p.id }, { deadlineMs: 120_000 });
    return {
      run,
      stop,
      concRun,
      concStop,
      berthdCpuMs: cpuMs(env.d.pid) - cpu0,
      shimCpuMs: shims.reduce((a, p) => a + cpuMs(p), 0) - shimCpu0,
      pods: SEQUENTIAL_PODS + CONCURRENT,
      load,
    };
  } finally {
    await env.stop();
  }
}

async function podsAll(): Promise<void> {
  const acc = new Map<Way, PodRound[]>(WAYS.map((w) => [w, []]));
  for (let r = 0; r < rounds; r++) {
    for (const w of WAYS) {
      process.stderr.write(`[spawn bench] CRI round ${r + 1}/${rounds}, ${w}\n`);
      acc.get(w)!.push(await podRound(w, r));
    }
  }
  console.log(
    `(b) CRI through berthd, ${rounds} rounds per way: RunPodSandbox / StopPodSandbox one at a time ` +
      `(median of ${SEQUENTIAL_PODS * rounds}), ${CONCURRENT} pods at once (median of ${rounds})`,
  );
  for (const w of WAYS) {
    const rs = acc.get(w)!;
    const pods = rs.reduce((a, x) => a + x.pods, 0);
    console.log(
      `  ${w.padEnd(13)}  RunPodSandbox ${median(rs.flatMap((x) => x.run)).toFixed(1)} ms` +
        `  StopPodSandbox ${median(rs.flatMap((x) => x.stop)).toFixed(1)} ms` +
        `  ${CONCURRENT} at once: run ${median(rs.map((x) => x.concRun)).toFixed(0)} ms, stop ${median(rs.map((x) => x.concStop)).toFixed(0)} ms` +
        `  CPU per pod: berthd ${(rs.reduce((a, x) => a + x.berthdCpuMs, 0) / pods).toFixed(1)} ms,` +
        ` shim ${(rs.reduce((a, x) => a + x.shimCpuMs, 0) / pods).toFixed(1)} ms` +
        `  [load ${rs.map((x) => x.load).join(" | ")}]`,
    );
  }
}

try {
  await microAll();
  if (!microOnly) await podsAll();
} finally {
  if (!microOnly) await (await testImages()).stop();
}
