// CRI pod and container latency through a real berthd (real runc, CNI and shims), each
// figure printed beside the floor of bare runc on the same kind of rootfs:
//   RunPodSandbox                   vs  runc run -d of a sleeping busybox (fresh netns)
//   CreateContainer + StartContainer vs  runc run -d
//   ExecSync `true`                  vs  runc exec `true`
//   20 pods started concurrently     vs  20 concurrent runc run -d
// Run: npx tsc -p tsconfig.json && node dist/bench/cri.bench.js [iterations]
import { execFile, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { makeBundle } from "../test/helpers/bundle.js";
import { startCriEnv, testImages } from "../test/helpers/cri.js";

const run = promisify(execFile);
const N = Number(process.argv[2] ?? 10);
const CONCURRENT = 20;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

async function timed<T>(fn: () => Promise<T>): Promise<[number, T]> {
  const t0 = performance.now();
  const v = await fn();
  return [performance.now() - t0, v];
}

function report(what: string, berth: number[], floor: number[]): void {
  const b = median(berth);
  const f = median(floor);
  console.log(`${what.padEnd(34)} berth ${b.toFixed(1).padStart(8)} ms   runc floor ${f.toFixed(1).padStart(8)} ms   ratio ${(b / f).toFixed(2)}x   (median of ${berth.length})`);
}

/** The bare-runc floor: `runc run -d` on a busybox bundle, `runc exec`, then cleanup. */
class RuncFloor {
  readonly dir = mkdtempSync(join(tmpdir(), "berth-cri-bench-runc-"));
  readonly root = join(this.dir, "state");
  private n = 0;

  bundle(): { id: string; path: string } {
    const id = `bench-${process.pid}-${this.n++}`;
    const path = join(this.dir, id);
    makeBundle(path, { args: ["sleep", "1000"], cgroupsPath: `/berth-bench/${id}` });
    return { id, path };
  }

  /** `runc run -d`; the container inherits runc's stdio, so it gets /dev/null (a pipe would stay open). */
  runD(b: { id: string; path: string }): Promise<void> {
    return new Promise((resolve, reject) => {
      const child = spawn("runc", ["--root", this.root, "run", "-d", "--bundle", b.path, b.id], { stdio: "ignore" });
      child.once("error", reject);
      child.once("exit", (code) => (code === 0 ? resolve() : reject(new Error(`runc run -d exited with ${code}`))));
    });
  }

  async exec(id: string): Promise<void> {
    await run("runc", ["--root", this.root, "exec", id, "true"], { timeout: 60_000 });

  }

  async remove(id: string): Promise<void> {
    await run("runc", ["--root", this.root, "delete", "-f", id]).catch(() => {});
  }

  close(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const env = await startCriEnv({ bridge: "berthbench0", subnet: "10.234.200.0/24" });
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
    const [concMs, pods] = await timed(() => Promise.all(Array.from({ length: CONCURRENT }, (_, i) => env.runPod(`conc-${i}`))));
    for (const p of pods) {
      await env.d.rt.stopPodSandbox({ podSandboxId: p.id }, { deadlineMs: 120_000 });
      await env.d.rt.removePodSandbox({ podSandboxId: p.id }, { deadlineMs: 120_000 });
    }

    report("RunPodSandbox", podTimes, runFloor);
    report("CreateContainer+StartContainer", ctrTimes, runFloor);
    report("ExecSync true", execTimes, execFloor);
    report(`${CONCURRENT} pods concurrently (total)`, [concMs], [concFloor]);
  } finally {
    floor.close();
    await env.stop();
    await (await testImages()).stop();
  }
}

await main();
