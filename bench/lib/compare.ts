// `npm run bench -- --compare containerd`: containerd 2.4 (with CRI, built by go-tools),
// Debian's containerd 1.6 and a private berthd, one after the other, each measured by the
// same Go CRI client (test/go/cri-bench) with the same images, registry mirror, conflist
// shape and pause image; floors (runc, bare CNI, gzip -d) measured in the same run.
// Everything started is removed at the end, also on error or Ctrl-C.
import { rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { goTool } from "../../test/helpers/go-tools.js";
import { startBerthd, type CriTarget } from "./target.js";
import { startContainerd, type Generation } from "./containerd.js";
import { waitForQuiet } from "./quiet.js";
import { startCompareImages, deleteLink, removeCgroupParent, unmountUnder, writeHostsToml } from "./compare-env.js";
import { runClient, type ClientSizes } from "./compare-client.js";
import { measureCniFloor } from "./cni-floor.js";
import { RuncFloor } from "./floor.js";
import { memOf, shimPids, sumMem, loadavg } from "./memory.js";
import { gzipFloorSeconds } from "./pull.js";
import { timed } from "./stats.js";
import { RUNTIMES, sideRows, sideTable, type Floors, type RuntimeName, type RuntimeResult } from "./compare-report.js";

export interface CompareSizes extends ClientSizes {
  floorSamples: number;
  bigLayers: number;
  bigLayerMiB: number;
  /** How long to wait at most for a quiet machine before each timed phase (0: no wait). */
  quietBoundMs: number;
}

export const COMPARE_FULL: CompareSizes = {
  samples: 20,
  statusSamples: 200,
  warmReads: 1000,
  list: 1000,
  listPods: 4,
  listSamples: 20,
  churn: 40,
  concurrent: [20, 100],
  // a single burst's wall time swung 0.7-1.1x from run to run; the 100-pod one takes 10 s each
  concurrentTimes: [5, 1],
  // 5 pulls of the small image gave a p50 that moved 0.96-1.30x between runs
  pullsSmall: 15,
  pullsBig: 3,
  floorSamples: 21,
  bigLayers: 4,
  bigLayerMiB: 50,
  quietBoundMs: 60_000,
};
export const COMPARE_QUICK: CompareSizes = {
  samples: 3,
  statusSamples: 20,
  warmReads: 50,
  list: 50,
  listPods: 2,
  listSamples: 5,
  churn: 8,
  concurrent: [4, 8],
  pullsSmall: 1,
  pullsBig: 1,
  floorSamples: 3,
  bigLayers: 2,
  bigLayerMiB: 10,
  quietBoundMs: 0,
};

/** Each runtime's own bridge and /24, and the bare CNI floor's. */
const NETS = {
  "containerd 2.4": { bridge: "berthsbs0", subnet: "10.234.80.0/24" },
  "containerd 1.6": { bridge: "berthsbs1", subnet: "10.234.81.0/24" },
  berth: { bridge: "berthsbs2", subnet: "10.234.82.0/24" },
  floor: { bridge: "berthsbs3", subnet: "10.234.83.0/24" },
} as const;

const log = (msg: string) => process.stderr.write(`[bench] ${msg}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface CompareOutput {
  started: Date;
  seconds: number;
  load: { before: string; after: string };
  sizes: CompareSizes;
  floors: Floors | null;
  results: Partial<Record<RuntimeName, RuntimeResult | null>>;
  errors: Partial<Record<RuntimeName, string>>;
  table: string;
  labels: Parameters<typeof sideRows>[2];
}

async function runcFloor(samples: number): Promise<Pick<Floors, "runcRunMs" | "runcExecMs" | "runcDeleteMs">> {
  const f = new RuncFloor();
  const out = { runcRunMs: [] as number[], runcExecMs: [] as number[], runcDeleteMs: [] as number[] };
  try {
    for (let i = 0; i < samples; i++) {
      const b = f.bundle();
      out.runcRunMs.push((await timed(() => f.runD(b)))[0]);
      out.runcExecMs.push((await timed(() => f.exec(b.id)))[0]);
      out.runcDeleteMs.push((await timed(() => f.remove(b.id)))[0]);
    }
    return out;
  } finally {
    await f.close();
  }
}

/** A started runtime, as the client and the memory readings need it. */
interface Started {
  socket: string;
  pid: number;
  shimMarker: string;
  cgroupParent: string;
  logDir: string;
  close(): Promise<void>;
}

async function startBerth(registryHost: string): Promise<Started> {
  const t: CriTarget = await startBerthd({ name: "berth", ...NETS.berth });
  const dir = dirname(t.logDir);
  writeHostsToml(join(dir, "certs.d"), registryHost);
  const cgroupParent = "/berth-bench-berth";
  return {
    socket: t.socket,
    pid: t.pid!,
    shimMarker: t.shimMarker!,
    cgroupParent,
    logDir: t.logDir,
    async close() {
      // the client removes its pods; after a failure, whatever is left goes here
      const pods = await t.rt.listPodSandbox({}, { deadlineMs: 30_000 }).catch(() => ({ items: [] }));
      for (const p of pods.items) {
        await t.rt.stopPodSandbox({ podSandboxId: p.id }, { deadlineMs: 120_000 }).catch(() => {});
        await t.rt.removePodSandbox({ podSandboxId: p.id }, { deadlineMs: 120_000 }).catch(() => {});
      }
      await t.close().catch((err: Error) => {
        log(`berth: ${err.message}; unmounting what is left`);
        unmountUnder(dir);
        rmSync(dir, { recursive: true, force: true });
      });
      deleteLink(NETS.berth.bridge);
      removeCgroupParent(cgroupParent);
    },
  };
}

/** Runs the client against one runtime, reading memory at its hold points. */
async function measure(
  name: RuntimeName,
  rt: Started,
  images: Parameters<typeof runClient>[1],
  s: CompareSizes,
  signal: AbortSignal,
) {
  const memory: RuntimeResult["memory"] = {};
  const onHold = async (label: string) => {
    if (label === "quiet") {
      // Before a timed phase: the kernel may still be tearing down the previous phase's pods
      // (quiet.ts), and that would land on this phase's rows, more for one runtime than another.
      if (s.quietBoundMs === 0) return;
      const q = await waitForQuiet(0.1, s.quietBoundMs);
      log(`${name}: quiet after ${(q.waitedMs / 1000).toFixed(1)} s (${Math.round(q.busy * 100)}% busy)`);
      return;
    }
    // Every runtime settles 3 s after a burst before its memory is read: the steady state an
    // operator sees, not the burst's. berthd trims its heap once quiet for 1 s (util/idle-trim.ts);
    // Go returns freed memory in the background too.
    await sleep(3000);
    const d = memOf(rt.pid);
    const point: RuntimeResult["memory"][string] = { daemonPssKiB: d.pssKiB, daemonRssKiB: d.rssKiB };
    if (label.startsWith("pods-")) {
      const pids = shimPids(rt.shimMarker);
      const m = sumMem(pids);
      point.shimPssKiB = m.pssKiB;
      point.shimProcs = pids.length;
    }
    memory[label] = point;
    log(`${name}: memory at ${label}: daemon PSS ${(d.pssKiB / 1024).toFixed(1)} MiB` +
      (point.shimPssKiB !== undefined ? `, shims ${(point.shimPssKiB / 1024).toFixed(1)} MiB in ${point.shimProcs} procs` : "")); // prettier-ignore
  };
  const r = await runClient(rt, images, s, onHold, (m) => log(`${name}: ${m}`), signal);
  return { samples: r.samples, listed: r.listed, memory };
}

export async function runCompare(quick: boolean): Promise<CompareOutput> {
  const s = quick ? COMPARE_QUICK : COMPARE_FULL;
  const started = new Date();
  const before = loadavg();
  // built (or found in the cache) before anything starts, so a build never overlaps a measurement
  goTool("containerd-2.4-cri", "containerd");
  goTool("cri-bench");
  let images: Awaited<ReturnType<typeof startCompareImages>> | undefined;
  // Ctrl-C: the client is stopped and no further runtime starts; the finally blocks below then
  // remove what was started (each runtime's pods, daemon, shims, mounts; the registry) before exit.
  const abort = new AbortController();
  const onSignal = (sig: NodeJS.Signals) => {
    log(`${sig}: stopping and cleaning up`);
    abort.abort();
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  try {
    log(`images: busybox, pause, a 2 MiB and a ${s.bigLayers * s.bigLayerMiB} MiB image`);
    images = await startCompareImages(s.bigLayers, s.bigLayerMiB);
    // The floors are measured in slices, one before each runtime, and pooled: on a shared
    // machine whose load swings, one block at the start would catch a single moment.
    const floors: Floors = {
      runcRunMs: [],
      runcExecMs: [],
      runcDeleteMs: [],
      cniAddMs: [],
      cniDelMs: [],
      gzipSmallMs: [],
      gzipBigMs: [],
    };
    const floorSlice = async () => {
      const n = Math.ceil(s.floorSamples / RUNTIMES.length);
      log(`floors: runc, bare CNI ADD/DEL, gzip -d (${n} samples)`);
      const runc = await runcFloor(n);
      const cni = await measureCniFloor(NETS.floor, n);
      floors.runcRunMs.push(...runc.runcRunMs);
      floors.runcExecMs.push(...runc.runcExecMs);
      floors.runcDeleteMs.push(...runc.runcDeleteMs);
      floors.cniAddMs.push(...cni.addMs);
      floors.cniDelMs.push(...cni.delMs);
      floors.gzipSmallMs.push(gzipFloorSeconds(images!.small.files) * 1000);
      floors.gzipBigMs.push(gzipFloorSeconds(images!.big.files) * 1000);
    };
    const clientImages = { busybox: images.busybox, small: images.small.ref, big: images.big.ref };
    const results: CompareOutput["results"] = {};
    const errors: CompareOutput["errors"] = {};
    for (const name of RUNTIMES) {
      if (abort.signal.aborted) throw new Error("interrupted");
      const t0 = Date.now();
      let current: Started | undefined;
      try {
        const quiet = await waitForQuiet();
        log(
          `${name}: the machine was ${(quiet.busy * 100).toFixed(0)}% busy after waiting ${(quiet.waitedMs / 1000).toFixed(0)} s`,
        );
        await floorSlice();
        if (abort.signal.aborted) throw new Error("interrupted");
        log(`${name}: starting`);
        current =
          name === "berth"
            ? await startBerth(images.registry.host)
            : await startContainerd(
                name.slice("containerd ".length) as Generation,
                NETS[name],
                images.registry.host,
                images.pause,
                log,
              );
        if (abort.signal.aborted) throw new Error("interrupted");
        results[name] = await measure(name, current, clientImages, s, abort.signal);
      } catch (err) {
        errors[name] = (err as Error).message;
        results[name] = null;
        log(`${name}: FAILED: ${errors[name]}`);
      } finally {
        await current?.close().catch((err: Error) => log(`${name}: cleanup: ${err.message}`));
        log(`${name}: done in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
      }
    }
    const labels = {
      listContainers: s.list,
      warmReads: s.warmReads,
      churn: s.churn,
      concurrent: s.concurrent,
      smallMiB: Math.round(images.small.uncompressedBytes / 2 ** 20),
      bigMiB: Math.round(images.big.uncompressedBytes / 2 ** 20),
    };
    return {
      started,
      seconds: (Date.now() - started.getTime()) / 1000,
      load: { before, after: loadavg() },
      sizes: s,
      floors,
      results,
      errors,
      labels,
      table: sideTable(sideRows(results, floors, labels)),
    };
  } finally {
    await images?.stop().catch(() => {});
    process.removeListener("SIGINT", onSignal);
    process.removeListener("SIGTERM", onSignal);
    if (abort.signal.aborted) process.exit(130);
  }
}
