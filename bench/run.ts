// `npm run bench`: every benchmark in one run and one table. Each of berth's figures sits
// beside its floor measured in the same run (bare runc on a busybox rootfs, gzip -d of the
// same layers) and, with --compare / --compare-self, beside a second CRI runtime's figure.
//
//   npm run build && npm run bench -- [--quick] [--json FILE] [--svg FILE]
//                                      [--compare unix:///run/containerd/containerd.sock [--compare-pid PID]]
//                                      [--compare-self]
//   npm run bench -- --compare containerd [--quick] [--state-on-disk] [--json FILE] [--results FILE]
//     side by side: containerd 2.4, Debian's containerd 1.6 and berthd through one Go CRI
//     client, with floors (bench/lib/compare*.ts); a full run rewrites RESULTS.md's section
//
// It starts its own registry (with a busybox image), a private berthd on bridge berthbench0
// (10.234.30.0/24) and, for --compare-self, a second one on berthbench0c (10.234.31.0/24);
// everything is removed at the end. Progress goes to stderr, the table to stdout.
import { Command } from "commander";
import { cpus, totalmem } from "node:os";
import { readFileSync } from "node:fs";
import { testImages } from "../test/helpers/cri.js";
import { sideBySide } from "./lib/compare-main.js";
import { loadavg } from "./lib/memory.js";
import { gzipFloorSeconds, pushBigImage } from "./lib/pull.js";
import { svg, table, writeJson, type Row } from "./lib/report.js";
import { percentile } from "./lib/stats.js";
import { FULL, QUICK, measureCri, measureFloor, measurePull, type CriResults, type Sizes } from "./lib/suite.js";
import { connectCri, startBerthd, type CriTarget } from "./lib/target.js";

interface Opts {
  quick?: boolean;
  stateOnDisk?: boolean;
  json?: string;
  svg?: string;
  compare?: string;
  comparePid?: string;
  compareSelf?: boolean;
  compareName?: string;
  results?: string;
  bridge: string;
  subnet: string;
}

/** The /24 after `subnet` (for the --compare-self daemon's network). */
function nextSubnet(subnet: string): string {
  const m = /^(\d+)\.(\d+)\.(\d+)\.0\/24$/.exec(subnet);
  if (!m) throw new Error(`--subnet must be a /24 ending in .0, got ${subnet}`);
  return `${m[1]}.${m[2]}.${Number(m[3]) + 1}.0/24`;
}

const log = (msg: string) => process.stderr.write(`[bench] ${msg}\n`);
const MiB = 1 << 20;

function machine(): Record<string, string | number> {
  let os = "";
  try {
    os = /^PRETTY_NAME="?([^"\n]*)/m.exec(readFileSync("/etc/os-release", "utf8"))?.[1] ?? "";
  } catch {
    // unknown
  }
  return {
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? "",
    memGiB: Math.round(totalmem() / 2 ** 30),
    os,
    kernel: readFileSync("/proc/sys/kernel/osrelease", "utf8").trim(),
    node: process.version,
  };
}

function rows(
  s: Sizes,
  floor: Awaited<ReturnType<typeof measureFloor>>,
  b: CriResults,
  c: CriResults | undefined | null,
  pull: { berth: number; floor: number; compare?: number | null; mib: number },
): Row[] {
  const p = (xs: number[] | undefined, q: number) => (xs && xs.length ? percentile(xs, q) : null);
  const mem = (m: { rssKiB: number; pssKiB: number } | undefined, k: "rssKiB" | "pssKiB", per = 1) =>
    m ? m[k] / 1024 / per : null;
  const time = { unit: "ms", lowerIsBetter: true };
  const size = { unit: "MiB", lowerIsBetter: true, floor: null, floorWhat: "-" };
  return [
    {
      metric: "RunPodSandbox p50",
      ...time,
      berth: p(b.podStartMs, 50),
      floor: p(floor.runMs, 50),
      floorWhat: "runc run -d p50",
      compare: p(c?.podStartMs, 50),
    },
    {
      metric: "RunPodSandbox p90",
      ...time,
      berth: p(b.podStartMs, 90),
      floor: p(floor.runMs, 90),
      floorWhat: "runc run -d p90",
      compare: p(c?.podStartMs, 90),
    },
    {
      metric: "CreateContainer+StartContainer p50",
      ...time,
      berth: p(b.ctrStartMs, 50),
      floor: p(floor.runMs, 50),
      floorWhat: "runc run -d p50",
      compare: p(c?.ctrStartMs, 50),
    },
    {
      metric: "ExecSync `true` p50",
      ...time,
      berth: p(b.execMs, 50),
      floor: p(floor.execMs, 50),
      floorWhat: "runc exec p50",
      compare: p(c?.execMs, 50),
    },
    {
      metric: `pod churn: ${s.churnPods} pods run+remove @${s.churnConcurrency}`,
      ...time,
      berth: b.churnMs,
      floor: floor.churnMs,
      floorWhat: "runc run -d + delete -f",
      compare: c?.churnMs ?? null,
    },
    {
      metric: `ListContainers, ${b.listedContainers} containers p50`,
      ...time,
      berth: p(b.listMs, 50),
      floor: p(b.versionMs, 50),
      floorWhat: "Version RPC p50",
      compare: p(c?.listMs, 50),
    },
    {
      metric: `pull+unpack ${pull.mib.toFixed(0)} MiB (uncompressed)`,
      unit: "MiB/s",
      lowerIsBetter: false,
      berth: pull.mib / pull.berth,
      floor: pull.mib / pull.floor,
      floorWhat: "gzip -d same layers",
      compare: pull.compare ? pull.mib / pull.compare : null,
    },
    { metric: "berthd RSS idle", ...size, berth: mem(b.daemonIdle, "rssKiB"), compare: mem(c?.daemonIdle, "rssKiB") },
    { metric: "berthd PSS idle", ...size, berth: mem(b.daemonIdle, "pssKiB"), compare: mem(c?.daemonIdle, "pssKiB") },
    {
      metric: `berthd RSS with ${s.memPods} pods`,
      ...size,
      berth: mem(b.daemonLoaded, "rssKiB"),
      compare: mem(c?.daemonLoaded, "rssKiB"),
    },
    {
      metric: `berthd PSS with ${s.memPods} pods`,
      ...size,
      berth: mem(b.daemonLoaded, "pssKiB"),
      compare: mem(c?.daemonLoaded, "pssKiB"),
    },
    {
      metric: `shim PSS per pod (${s.memPods} pods, ${b.shims?.procs ?? 0} shim procs)`,
      ...size,
      berth: mem(b.shims, "pssKiB", s.memPods),
      compare: mem(c?.shims, "pssKiB", s.memPods),
    },
  ];
}

async function main(): Promise<void> {
  const o = new Command("bench")
    .description("run berth's benchmarks and print one table of figures, floors and ratios")
    .option("--quick", "small sizes for a fast run (about two minutes)")
    .option("--json <file>", "also write the results as JSON")
    .option("--svg <file>", "also write a bar chart (berth vs floor, and compare) as SVG")
    .option(
      "--compare <address>",
      "a second CRI endpoint to measure the same way, e.g. unix:///run/containerd/containerd.sock; 'containerd': side by side with containerd 2.4 and 1.6",
    )
    .option(
      "--results <file>",
      "with --compare containerd: the RESULTS.md whose side-by-side section to rewrite (default: bench/RESULTS.md on a full run)",
    )
    .option(
      "--state-on-disk",
      "with --compare containerd: every runtime's runtime state on the machine's disk instead of a tmpfs (what /run is on a node)",
    )
    .option("--compare-pid <pid>", "the --compare daemon's pid, for its memory rows")
    .option("--compare-name <name>", "label of the compared runtime", "")
    .option("--compare-self", "compare against a second private berthd started by the bench (tests --compare)")
    .option("--bridge <name>", "CNI bridge of the bench's berthd (--compare-self adds a 'c')", "berthbench0")
    .option("--subnet <cidr>", "its pod /24 (--compare-self uses the next one)", "10.234.30.0/24")
    .parse()
    .opts<Opts>();
  if (o.compare === "containerd") {
    await sideBySide({ quick: !!o.quick, stateOnDisk: !!o.stateOnDisk, json: o.json, results: o.results });
    return;
  }
  const sizes = o.quick ? QUICK : FULL;
  const started = new Date();
  const load0 = loadavg();
  const images = await testImages();
  const targets: CriTarget[] = [];
  const cleanups: (() => Promise<void>)[] = [];
  let cleaning: Promise<void> | undefined;
  const cleanup = () =>
    (cleaning ??= (async () => {
      log("cleaning up");
      for (const t of targets.reverse())
        await t.close().catch((err: Error) => log(`cleanup of ${t.name}: ${err.message}`));
      for (const f of cleanups) await f().catch(() => {});
      await images.stop();
    })());
  // Ctrl-C mid-run: remove the pods, daemons and registry before leaving (measurements in flight may fail meanwhile).
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.once(sig, () => {
      log(`${sig}: stopping`);
      void cleanup().finally(() => process.exit(130));
    });
  }
  try {
    log("starting berthd");
    const berth = await startBerthd({ name: "berth", bridge: o.bridge, subnet: o.subnet });
    targets.push(berth);
    let compare: CriTarget | undefined;
    if (o.compareSelf) {
      compare = await startBerthd({
        name: o.compareName || "berth-2",
        bridge: `${o.bridge}c`,
        subnet: nextSubnet(o.subnet),
      });
    } else if (o.compare) {
      compare = connectCri(o.compareName || "compare", o.compare, o.comparePid ? Number(o.comparePid) : undefined);
    }
    if (compare) targets.push(compare);

    log("floor: bare runc");
    const floor = await measureFloor(sizes);

    const b = await measureCri(berth, images.busybox, sizes);
    let c: CriResults | null | undefined;
    if (compare) {
      c = await measureCri(compare, images.busybox, sizes).catch((err: Error) => {
        log(`${compare.name}: CRI measurements failed: ${err.message}`);
        return null;
      });
    }

    log(`pull: ${sizes.pullLayers} layers of ${sizes.pullLayerMiB} MiB`);
    const big = await pushBigImage(images.registry.host, sizes.pullLayers, sizes.pullLayerMiB);
    cleanups.push(() => big.cleanup());
    const gz = gzipFloorSeconds(big.files);
    const pb = await measurePull(berth, big.ref);
    const pc = compare
      ? await measurePull(compare, big.ref).catch((err: Error) => {
          log(`${compare.name}: pull failed: ${err.message}`);
          return null;
        })
      : undefined;

    const all = rows(sizes, floor, b, c, { berth: pb, floor: gz, compare: pc, mib: big.uncompressedBytes / MiB });
    const load1 = loadavg();
    const compareName = compare?.name;
    const text = table(all, compareName);
    const info = machine();
    console.log(`berth benchmarks (${o.quick ? "--quick" : "full"}), ${started.toISOString()}`);
    console.log(
      `machine: ${info.cpus} x ${info.cpuModel}, ${info.memGiB} GiB, ${info.os}, kernel ${info.kernel}, node ${info.node}; loadavg before ${load0}, after ${load1}`,
    );
    console.log(text);
    console.log(
      "ratios: how many times the reference's cost berth's figure is (time, memory, or 1/throughput); below 1 is better than the reference",
    );
    if (o.json) {
      writeJson(o.json, {
        started: started.toISOString(),
        mode: o.quick ? "quick" : "full",
        machine: info,
        load: { before: load0, after: load1 },
        sizes,
        compare: compareName ?? null,
        rows: all,
        raw: {
          floor,
          berth: b,
          compare: c ?? null,
          pull: {
            berthS: pb,
            gzipS: gz,
            compareS: pc ?? null,
            uncompressedBytes: big.uncompressedBytes,
            compressedBytes: big.compressedBytes,
          },
        },
      });
      log(`wrote ${o.json}`);
    }
    if (o.svg) {
      const { writeFileSync } = await import("node:fs");
      writeFileSync(
        o.svg,
        svg(
          all,
          `berth benchmarks (${o.quick ? "quick" : "full"}), ${info.cpus} CPUs, kernel ${info.kernel}`,
          compareName,
        ),
      );
      log(`wrote ${o.svg}`);
    }
  } finally {
    await cleanup();
  }
}

await main();
