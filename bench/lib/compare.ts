// `npm run bench -- --compare containerd`: containerd 2.4 (with CRI, built by go-tools),
// Debian's containerd 1.6 and a private berthd, all running, each measured by its own run of
// the same Go CRI client (test/go/cri-bench) with the same images, registry mirror, conflist
// shape and pause image, the clients taking turns block by block (one runs, the others wait);
// floors (runc, bare CNI, gzip -d) measured in the same run.
// Everything started is removed at the end, also on error or Ctrl-C.
import { rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { goTool } from "../../test/helpers/go-tools.js";
import { startBerthd, type CriTarget } from "./target.js";
import { startContainerd, type Generation } from "./containerd.js";
import { waitForQuiet } from "./quiet.js";
import {
  startCompareImages,
  deleteLink,
  runDir,
  removeCgroupParent,
  unmountUnder,
  writeHostsToml,
} from "./compare-env.js";
import { SteppedClient, type ClientResult, type ClientSizes } from "./compare-client.js";
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
  // 20 samples of about 4 ms each were over in a moment, whose load decided the row
  listSamples: 50,
  churn: 40,
  concurrent: [20, 100],
  // a single burst's wall time swung 0.7-1.1x from run to run; the 100-pod one takes 10 s each
  concurrentTimes: [5, 1],
  // 5 pulls of the small image gave a p50 that moved 0.96-1.30x between runs
  pullsSmall: 15,
  pullsBig: 3,
  turns: 5,
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
  turns: 2,
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
  /** The runtime state was on the machine's disk, not on a tmpfs (compare-env.ts, runDir). */
  stateOnDisk: boolean;
  /** Each block a runtime ran, in order: the turn it ran in and the hold it ran from. */
  schedule: { turn: number; runtime: RuntimeName; from: string }[];
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

async function startBerth(registryHost: string, stateOnDisk: boolean): Promise<Started> {
  const run = runDir("berth-bench", stateOnDisk);
  let t: CriTarget;
  try {
    t = await startBerthd({ name: "berth", ...NETS.berth, runDir: run.path });
  } catch (err) {
    run.close();
    throw err;
  }
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
      run.close();
      deleteLink(NETS.berth.bridge);
      removeCgroupParent(cgroupParent);
    },
  };
}

/** A runtime in the run: its daemon, its client, and what the client reported so far. */
interface Live {
  name: RuntimeName;
  rt: Started;
  client: SteppedClient;
  memory: RuntimeResult["memory"];
  /** the hold its client stopped at: "quiet <phase>" or "turn" */
  at: string;
}

/** Reads the daemon's (and at "pods-N" the shims') memory at a hold. */
async function readMemory(l: Live, label: string): Promise<void> {
  // Every runtime settles 3 s after a burst before its memory is read: the steady state an
  // operator sees, not the burst's. berthd trims its heap once quiet for 1 s (util/idle-trim.ts);
  // Go returns freed memory in the background too.
  await sleep(3000);
  const d = memOf(l.rt.pid);
  const point: RuntimeResult["memory"][string] = { daemonPssKiB: d.pssKiB, daemonRssKiB: d.rssKiB };
  if (label.startsWith("pods-")) {
    const pids = shimPids(l.rt.shimMarker);
    const m = sumMem(pids);
    point.shimPssKiB = m.pssKiB;
    point.shimProcs = pids.length;
  }
  l.memory[label] = point;
  log(`${l.name}: memory at ${label}: daemon PSS ${(d.pssKiB / 1024).toFixed(1)} MiB` +
    (point.shimPssKiB !== undefined ? `, shims ${(point.shimPssKiB / 1024).toFixed(1)} MiB in ${point.shimProcs} procs` : "")); // prettier-ignore
}

/**
 * Lets a runtime's client run to its next turn ("quiet <phase>" or "turn"), reading memory at
 * the memory holds on the way, so those figures come right after the runtime's own work, and
 * waiting for a quiet machine at "settle" (between a phase's set-up and its timing); returns
 * its result once it exits.
 */
async function advance(l: Live, quietBoundMs: number): Promise<ClientResult | undefined> {
  for (;;) {
    const step = await l.client.next();
    if ("result" in step) return step.result;
    if (step.hold === "turn" || step.hold.startsWith("quiet")) {
      l.at = step.hold;
      return undefined;
    }
    if (step.hold === "settle") await quiet(l.name, step.hold, quietBoundMs);
    else await readMemory(l, step.hold).catch((err: Error) => log(`${l.name}: memory at ${step.hold}: ${err.message}`));
    l.client.release();
  }
}

/** Waits for a quiet machine before a timed phase: the kernel may still be tearing down pods (quiet.ts). */
async function quiet(name: RuntimeName, at: string, boundMs: number): Promise<void> {
  if (boundMs === 0) return;
  const q = await waitForQuiet(0.1, boundMs);
  log(`${name}: ${at}: quiet after ${(q.waitedMs / 1000).toFixed(1)} s (${Math.round(q.busy * 100)}% busy)`);
}

export async function runCompare(quick: boolean, stateOnDisk = false): Promise<CompareOutput> {
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
    // The floors are measured in three slices (at the start, before the list phase, at the end)
    // and pooled: on a shared machine whose load swings, one block would catch a single moment.
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
      const n = Math.ceil(s.floorSamples / 3);
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
    const t0 = new Map<RuntimeName, number>();
    const fail = (name: RuntimeName, err: Error) => {
      errors[name] = err.message;
      results[name] = null;
      log(`${name}: FAILED: ${err.message}`);
    };
    const finish = async (l: Live) => {
      l.client.kill();
      await l.rt.close().catch((err: Error) => log(`${l.name}: cleanup: ${err.message}`));
      live.splice(live.indexOf(l), 1);
      log(`${l.name}: done in ${((Date.now() - t0.get(l.name)!) / 1000).toFixed(0)} s`);
    };
    const live: Live[] = [];
    const schedule: CompareOutput["schedule"] = [];
    try {
      const first = await waitForQuiet();
      log(
        `the machine was ${(first.busy * 100).toFixed(0)}% busy after waiting ${(first.waitedMs / 1000).toFixed(0)} s`,
      );
      await floorSlice();
      // Every runtime is started, and its client run through the warm-up (and the idle memory
      // point) to the first timed phase, one runtime at a time.
      for (const name of RUNTIMES) {
        if (abort.signal.aborted) throw new Error("interrupted");
        t0.set(name, Date.now());
        let rt: Started | undefined;
        try {
          log(`${name}: starting`);
          rt =
            name === "berth"
              ? await startBerth(images.registry.host, stateOnDisk)
              : await startContainerd(
                  name.slice("containerd ".length) as Generation,
                  NETS[name],
                  images.registry.host,
                  images.pause,
                  log,
                  stateOnDisk,
                );
          const client = new SteppedClient(rt, clientImages, s, (m) => log(`${name}: ${m}`), abort.signal);
          const l: Live = { name, rt, client, memory: {}, at: "" };
          live.push(l);
          rt = undefined;
          if (await advance(l, s.quietBoundMs)) throw new Error("the client ended before its first timed phase");
        } catch (err) {
          fail(name, err as Error);
          const l = live.find((x) => x.name === name);
          if (l) await finish(l);
          else await rt?.close().catch((e: Error) => log(`${name}: cleanup: ${e.message}`));
        }
      }
      // Then in turns: each runtime runs its client to its next turn while the others wait, so
      // the same block of every timed loop (lifecycles, reads, bursts, lists, pulls) is measured for each
      // runtime within the same minute or so of a shared machine, whose load swings. Run one
      // after the other, a runtime's rows could land in a busy minute and another's in a quiet
      // one: the cold reads of one run moved 0.55-1.21x so. The order rotates each turn.
      let midFloors = false;
      for (let turn = 0; live.length > 0; turn++) {
        if (!midFloors && live.every((l) => l.at === "quiet list")) {
          await floorSlice();
          midFloors = true;
        }
        const order = live.map((_, i) => live[(i + turn) % live.length]!);
        for (const l of order) {
          if (abort.signal.aborted) throw new Error("interrupted");
          try {
            if (l.at.startsWith("quiet")) await quiet(l.name, l.at, s.quietBoundMs);
            schedule.push({ turn, runtime: l.name, from: l.at });
            l.client.release();
            const r = await advance(l, s.quietBoundMs);
            if (r) {
              results[l.name] = { samples: r.samples, listed: r.listed, memory: l.memory };
              await finish(l);
            }
          } catch (err) {
            fail(l.name, err as Error);
            await finish(l);
          }
        }
      }
      await floorSlice();
    } finally {
      for (const l of [...live]) await finish(l);
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
      stateOnDisk,
      schedule,
    };
  } finally {
    await images?.stop().catch(() => {});
    process.removeListener("SIGINT", onSignal);
    process.removeListener("SIGTERM", onSignal);
    if (abort.signal.aborted) process.exit(130);
  }
}
