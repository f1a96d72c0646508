// CRI pod and container latency through a real berthd (real runc, CNI and shims), each
// figure printed beside the floor of bare runc on the same kind of rootfs:
//   RunPodSandbox                   vs  runc run -d of a sleeping busybox (fresh netns)
//   CreateContainer + StartContainer vs  runc run -d
//   ExecSync `true`                  vs  runc exec `true`
//   20 pods started concurrently     vs  20 concurrent runc run -d
// Run: npx tsc -p tsconfig.json && node dist/bench/cri.bench.js [iterations]
// (`npm run bench` runs these and the rest as one table: bench/run.ts.)
import { startCriEnv, testImages } from "../test/helpers/cri.js";
import { RuncFloor } from "./lib/floor.js";
import { median, timed } from "./lib/stats.js";

const N = Number(process.argv[2] ?? 10);
const CONCURRENT = 20;

function report(what: string, berth: number[], floor: number[]): void {
  const b = median(berth);
  const f = median(floor);
  console.log(
    `${what.padEnd(34)} berth ${b.toFixed(1).padStart(8)} ms   runc floor ${f.toFixed(1).padStart(8)} ms   ratio ${(b / f).toFixed(2)}x   (median of ${berth.length})`,
  );
}

async function main(): Promise<void> {
  const env = await startCriEnv({ bridge: "berthbench2", subnet: "10.234.200.0/24" });
  const floor = new RuncFloor();
  try {
    await env.d.img.pullImage({ image: { image: env.images.busybox } }, { deadlineMs: 120_000 });

    // Floors first (same machine, same load).
    const runFloor: number[] = [];
    const execFloor: number[] = [];
    for (let i = 0; i < N; i++) {
      const b = floor.bundle();
      runFloor.push((await timed(() => floor.runD(b)))[0]);
      execFloor.push((await timed(() => floor.exec(b.id)))[0]);
      await floor.remove(b.id);
    }
    const bundles = Array.from({ length: CONCURRENT }, () => floor.bundle());
    const [concFloor] = await timed(() => Promise.all(bundles.map((b) => floor.runD(b))));
    for (const b of bundles) await floor.remove(b.id);

    // berth.
    const podTimes: number[] = [];
    const ctrTimes: number[] = [];
    const execTimes: number[] = [];
    for (let i = 0; i < N; i++) {
      const [podMs, pod] = await timed(() => env.runPod(`bench-${i}`));
      podTimes.push(podMs);
      const [ctrMs, cid] = await timed(() => env.runContainer(pod, "c", ["sleep", "1000"]));
      ctrTimes.push(ctrMs);
      for (let j = 0; j < 3; j++) {
        execTimes.push((await timed(() => env.d.rt.execSync({ containerId: cid, cmd: ["true"], timeout: 30n })))[0]);
      }
      await env.d.rt.stopPodSandbox({ podSandboxId: pod.id }, { deadlineMs: 120_000 });
      await env.d.rt.removePodSandbox({ podSandboxId: pod.id }, { deadlineMs: 120_000 });
    }
    const [concMs, pods] = await timed(() =>
      Promise.all(Array.from({ length: CONCURRENT }, (_, i) => env.runPod(`conc-${i}`))),
    );
    for (const p of pods) {
      await env.d.rt.stopPodSandbox({ podSandboxId: p.id }, { deadlineMs: 120_000 });
      await env.d.rt.removePodSandbox({ podSandboxId: p.id }, { deadlineMs: 120_000 });
    }

    report("RunPodSandbox", podTimes, runFloor);
    report("CreateContainer+StartContainer", ctrTimes, runFloor);
    report("ExecSync true", execTimes, execFloor);
    report(`${CONCURRENT} pods concurrently (total)`, [concMs], [concFloor]);
  } finally {
    await floor.close();
    await env.stop();
    await (await testImages()).stop();
  }
}

await main();
