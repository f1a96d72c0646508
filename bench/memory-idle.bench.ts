// Idle memory of berthd and of its serving shim, PSS and RSS from /proc/PID/smaps_rollup.
// Starts a private berthd (test/helpers/daemon.ts), lets it settle, measures; then runs one
// pod (the pause sandbox only) so the serving shim starts, removes it, lets the shim settle
// and measures both again. A focused run for the memory work of issue 15 (the full
// side-by-side table is `npm run bench -- --compare containerd`).
//
//   node dist/bench/memory-idle.bench.js [settle seconds, default 5]
// Extra node flags for berthd (and, through the environment, its shim) can be tried with
// NODE_OPTIONS=... in this script's environment.
import { setTimeout as sleep } from "node:timers/promises";
import { memOf, shimPids } from "./lib/memory.js";
import { startCriEnv } from "../test/helpers/cri.js";

const settleMs = Number(process.argv[2] ?? 5) * 1000;
const mib = (kib: number) => (kib / 1024).toFixed(1);

async function main(): Promise<void> {
  const env = await startCriEnv({ bridge: "bmemidle0", subnet: "10.88.231.0/24" });
  const d = env.d;
  try {
    await sleep(settleMs);
    const idle = memOf(d.pid);
    console.log(`berthd idle:              RSS ${mib(idle.rssKiB)} MiB  PSS ${mib(idle.pssKiB)} MiB`);
    const { id: podSandboxId } = await env.runPod("mem-idle");
    try {
      await d.rt.stopPodSandbox({ podSandboxId });
    } finally {
      await d.rt.removePodSandbox({ podSandboxId });
    }
    await sleep(settleMs);
    const after = memOf(d.pid);
    console.log(`berthd after one pod:     RSS ${mib(after.rssKiB)} MiB  PSS ${mib(after.pssKiB)} MiB`);
    for (const pid of shimPids(d.socket)) {
      const m = memOf(pid);
      console.log(`shim ${pid} idle:        RSS ${mib(m.rssKiB)} MiB  PSS ${mib(m.pssKiB)} MiB`);
    }
  } finally {
    try {
      await env.stop();
    } finally {
      await env.images.stop(); // the shared registry, or node stays up after the run
    }
  }
}

await main();
