// The CRI measurements, run the same way against any CriTarget, and the floors they sit beside.
import { RuncFloor } from "./floor.js";
import { memOf, shimPids, sumMem, type Mem } from "./memory.js";
import { percentile, pool, timed } from "./stats.js";
import { createContainer, removePod, runPod, startContainer, type CriTarget, type Pod } from "./target.js";

export interface Sizes {
  /** serial pod start / container start / exec samples */
  iterations: number;
  execPerContainer: number;
  churnPods: number;
  churnConcurrency: number;
  listContainers: number;
  listPods: number;
  listSamples: number;
  memPods: number;
  pullLayers: number;
  pullLayerMiB: number;
}

export const QUICK: Sizes = {
  iterations: 5,
  execPerContainer: 3,
  churnPods: 8,
  churnConcurrency: 4,
  listContainers: 100,
  listPods: 2,
  listSamples: 10,
  memPods: 3,
  pullLayers: 2,
  pullLayerMiB: 10,
};
export const FULL: Sizes = {
  iterations: 20,
  execPerContainer: 3,
  churnPods: 50,
  churnConcurrency: 8,
  listContainers: 1000,
  listPods: 4,
  listSamples: 20,
  memPods: 10,
  pullLayers: 4,
  pullLayerMiB: 50,
};

export interface FloorResults {
  runMs: number[];
  execMs: number[];
  churnMs: number;
}

/** `runc run -d` + `runc exec true` serially, then churn: run -d + delete -f of N at concurrency C. */
export async function measureFloor(s: Sizes): Promise<FloorResults> {
  const floor = new RuncFloor();
  try {
    const runMs: number[] = [];
    const execMs: number[] = [];
    for (let i = 0; i < s.iterations; i++) {
      const b = floor.bundle();
      runMs.push((await timed(() => floor.runD(b)))[0]);
      for (let j = 0; j < s.execPerContainer; j++) execMs.push((await timed(() => floor.exec(b.id)))[0]);
      await floor.remove(b.id);
    }
    const bundles = Array.from({ length: s.churnPods }, () => floor.bundle());
    const [churnMs] = await timed(() =>
      pool(s.churnPods, s.churnConcurrency, async (i) => {
        await floor.runD(bundles[i]!);
        await floor.remove(bundles[i]!.id);
      }),
    );
    return { runMs, execMs, churnMs };
  } finally {
    await floor.close();
  }
}

export interface CriResults {
  podStartMs: number[];
  ctrStartMs: number[];
  execMs: number[];
  churnMs: number;
  listMs: number[];
  /** an empty Version call on the same socket: the gRPC round trip under ListContainers */
  versionMs: number[];
  listedContainers: number;
  daemonIdle?: Mem;
  daemonLoaded?: Mem;
  /** shim PSS/RSS summed over all shim processes with memPods pods running */
  shims?: Mem & { procs: number };
}

const log = (msg: string) => process.stderr.write(`[bench] ${msg}\n`);

export async function measureCri(t: CriTarget, image: string, s: Sizes): Promise<CriResults> {
  await t.img.pullImage({ image: { image } }, { deadlineMs: 180_000 });
  const r: CriResults = {
    podStartMs: [],
    ctrStartMs: [],
    execMs: [],
    churnMs: NaN,
    listMs: [],
    versionMs: [],
    listedContainers: 0,
  };
  await new Promise((res) => setTimeout(res, 1000));
  if (t.pid) r.daemonIdle = memOf(t.pid);

  log(`${t.name}: pod start, container start, ExecSync x${s.iterations}`);
  for (let i = 0; i < s.iterations; i++) {
    const [podMs, pod] = await timed(() => runPod(t, `p${i}`));
    r.podStartMs.push(podMs);
    const [ctrMs, cid] = await timed(async () => {
      const id = await createContainer(t, pod, image, "c", ["sleep", "100000"]);
      await startContainer(t, id);
      return id;
    });
    r.ctrStartMs.push(ctrMs);
    for (let j = 0; j < s.execPerContainer; j++) {
      r.execMs.push(
        (
          await timed(() => t.rt.execSync({ containerId: cid, cmd: ["true"], timeout: 30n }, { deadlineMs: 60_000 }))
        )[0],
      );
    }
    await removePod(t, pod.id);
  }

  log(`${t.name}: churn ${s.churnPods} pods at concurrency ${s.churnConcurrency}`);
  [r.churnMs] = await timed(() =>
    pool(s.churnPods, s.churnConcurrency, async (i) => {
      const pod = await runPod(t, `churn${i}`);
      await removePod(t, pod.id);
    }),
  );

  log(`${t.name}: memory with ${s.memPods} pods`);
  const memPods: string[] = [];
  for (let i = 0; i < s.memPods; i++) {
    const pod = await runPod(t, `mem${i}`);
    await startContainer(t, await createContainer(t, pod, image, "c", ["sleep", "100000"]));
    memPods.push(pod.id);
  }
  await new Promise((res) => setTimeout(res, 1000));
  if (t.pid) r.daemonLoaded = memOf(t.pid);
  if (t.shimMarker) {
    const pids = shimPids(t.shimMarker);
    r.shims = { ...sumMem(pids), procs: pids.length };
  }
  for (const id of memPods) await removePod(t, id);

  log(`${t.name}: ListContainers with ${s.listContainers} created containers in ${s.listPods} pods`);
  const listPods: Pod[] = [];
  for (let i = 0; i < s.listPods; i++) listPods.push(await runPod(t, `list${i}`));
  await pool(s.listContainers, 4, (i) =>
    createContainer(t, listPods[i % s.listPods]!, image, `c${i}`, ["sleep", "100000"]),
  );
  for (let i = 0; i < s.listSamples; i++) {
    const [ms, res] = await timed(() => t.rt.listContainers({}, { deadlineMs: 60_000 }));
    r.listMs.push(ms);
    r.listedContainers = res.containers.length;
    r.versionMs.push((await timed(() => t.rt.version({})))[0]);
  }
  log(`${t.name}: removing the ListContainers pods`);
  for (const p of listPods) await removePod(t, p.id);
  return r;
}

/** Seconds to pull and unpack `ref` through the CRI; the image is removed afterwards. */
export async function measurePull(t: CriTarget, ref: string): Promise<number> {
  const [ms] = await timed(() => t.img.pullImage({ image: { image: ref } }, { deadlineMs: 600_000 }));
  await t.img.removeImage({ image: { image: ref } }, { deadlineMs: 120_000 }).catch(() => {});
  return ms / 1000;
}

export { percentile };
