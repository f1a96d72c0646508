// The read path kubelet polls, side by side: ContainerStatus, PodSandboxStatus, ImageStatus,
// ListImages and Version against a private berthd and containerd 2.4 (its CRI plugin,
// test/go/containerd-2.4-cri), timed by the side-by-side bench's Go client (test/go/cri-bench,
// k8s.io/cri-client as kubelet) with every phase but the reads sized to zero. A few minutes
// where `npm run bench -- --compare containerd` takes a quarter of an hour, for working on
// issue 15's read rows; the runtimes alternate round by round so load swings hit both.
//
//   npx tsc -p tsconfig.json && node dist/bench/read.bench.js [--samples 1000] [--rounds 2]
//                                                            [--no-containerd] [--json FILE]
//
// Everything it starts (registry, daemons, pods, bridges berthrd0/berthrd1 on 10.234.84-85.0/24)
// is removed at the end, also on error. Not at the same time as `--compare containerd`: both
// give containerd 2.4 the cgroup parent /berth-bench-cd24 (bench/lib/containerd.ts).
import { Command } from "commander";
import { dirname, join } from "node:path";
import { writeFileSync } from "node:fs";
import { goTool } from "../test/helpers/go-tools.js";
import { startContainerd } from "./lib/containerd.js";
import { deleteLink, removeCgroupParent, startCompareImages, writeHostsToml } from "./lib/compare-env.js";
import { runClient, type ClientSizes, type ClientTarget } from "./lib/compare-client.js";
import { machineLine } from "./lib/compare-main.js";
import { loadavg } from "./lib/memory.js";
import { percentile } from "./lib/stats.js";
import { startBerthd } from "./lib/target.js";

const o = new Command("read.bench")
  .option("--samples <n>", "interleaved rounds of the five reads per runtime per round", "1000")
  .option("--rounds <n>", "rounds; each runs every runtime once", "2")
  .option("--no-containerd", "berthd only")
  .option("--json <file>", "also write every sample as JSON")
  .parse()
  .opts<{ samples: string; rounds: string; containerd: boolean; json?: string }>();

const ROWS = ["ContainerStatus", "PodSandboxStatus", "ImageStatus", "ListImages", "Version"];
const log = (msg: string) => process.stderr.write(`[read.bench] ${msg}\n`);

/** Only the warm-up (pull, one pod) and the reads phase of cri-bench. */
const sizes: ClientSizes = {
  samples: 0,
  statusSamples: Number(o.samples),
  warmReads: 0,
  list: 0,
  listPods: 0,
  listSamples: 0,
  churn: 0,
  concurrent: [],
  pullsSmall: 0,
  pullsBig: 0,
  turns: 0,
};

interface Started extends ClientTarget {
  close(): Promise<void>;
}

async function startBerth(registryHost: string): Promise<Started> {
  const t = await startBerthd({ name: "berth", bridge: "berthrd0", subnet: "10.234.84.0/24" });
  writeHostsToml(join(dirname(t.logDir), "certs.d"), registryHost);
  const cgroupParent = "/berth-bench-read";
  return {
    socket: t.socket,
    logDir: t.logDir,
    cgroupParent,
    async close() {
      await t.close();
      deleteLink("berthrd0");
      removeCgroupParent(cgroupParent);
    },
  };
}

goTool("cri-bench");
if (o.containerd) goTool("containerd-2.4-cri", "containerd");
const loadBefore = loadavg();
const images = await startCompareImages(1, 1);
const samples = new Map<string, Record<string, number[]>>();
try {
  const runtimes: [string, () => Promise<Started>][] = [["berth", () => startBerth(images.registry.host)]];
  if (o.containerd)
    runtimes.push([
      "containerd 2.4",
      () =>
        startContainerd(
          "2.4",
          { bridge: "berthrd1", subnet: "10.234.85.0/24" },
          images.registry.host,
          images.pause,
          log,
        ),
    ]);
  for (let r = 0; r < Number(o.rounds); r++) {
    for (const [name, start] of runtimes) {
      log(`round ${r + 1}: ${name}`);
      const rt = await start();
      try {
        const res = await runClient(
          rt,
          { busybox: images.busybox, small: images.busybox, big: images.busybox },
          sizes,
          async () => {},
          (m) => log(`${name}: ${m}`),
        );
        const acc = samples.get(name) ?? {};
        for (const row of ROWS) (acc[row] ??= []).push(...(res.samples[row] ?? []));
        samples.set(name, acc);
      } finally {
        await rt.close();
      }
    }
  }
} finally {
  await images.stop();
}

const names = [...samples.keys()];
const fmt = (x: number) => (x < 1 ? x.toFixed(3) : x.toFixed(2));
const header = ["read (ms, p50 / p90)", ...names, ...(names.length > 1 ? [`${names[0]}/${names[1]} p50`] : [])];
const lines = ROWS.map((row) => {
  const cells = names.map((n) => {
    const xs = samples.get(n)![row]!;
    return `${fmt(percentile(xs, 50))} / ${fmt(percentile(xs, 90))}`;
  });
  if (names.length > 1) {
    const p = (n: string) => percentile(samples.get(n)![row]!, 50);
    cells.push(`${(p(names[0]!) / p(names[1]!)).toFixed(2)}x`);
  }
  return [row, ...cells];
});
const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
const line = (cells: string[]) =>
  `| ${cells.map((c, i) => (i ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join(" | ")} |`;
console.log(`reads, ${o.rounds} rounds x ${o.samples} samples per runtime; ${machineLine()}`);
console.log(`load average before ${loadBefore}, after ${loadavg()}`);
console.log(line(header));
console.log(`|${widths.map((w, i) => (i ? "-".repeat(w + 1) + ":" : "-".repeat(w + 2))).join("|")}|`);
for (const l of lines) console.log(line(l));
if (o.json) writeFileSync(o.json, JSON.stringify({ rounds: o.rounds, samples: Object.fromEntries(samples) }) + "\n");
