// How a fresh berthd's reads warm up: the first thousands of calls of a read run while V8 still
// interprets or baseline-compiles the call path, and this is what the side-by-side table's
// first reads measure (the rows without "after 1000 more rounds"). Starts a private berthd (its
// node flags: bin/berthd's shebang, or BERTHD_NODE_FLAGS), one pod with one container, then runs
// the Go client (test/go/cri-read-bench, k8s.io/cri-client as kubelet) --runs times, one after
// the other, each 200 interleaved rounds of ContainerStatus, PodSandboxStatus, ImageStatus,
// ListImages and Version with no warm-up. Per run: berthd's main-thread and other threads' CPU
// (/proc schedstat, ns), then per read the medians of 5 blocks of 40 rounds and the run's p50.
//
//   npx tsc -p tsconfig.json && node dist/bench/read-warmup.bench.js [--runs 2]
//   BERTHD_NODE_FLAGS="..." node dist/bench/read-warmup.bench.js     (other V8 flags)
//
// The machine's load moves single runs by 10-20%: compare flag sets in alternating runs.
// Everything it starts (registry, berthd, bridge berthrc0 on 10.234.86.0/24) is removed at the end.
import { Command } from "commander";
import { execFile } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { buildCritestImages } from "../test/helpers/critest-images.js";
import { berthdNodeFlags } from "../test/helpers/daemon.js";
import { goTool } from "../test/helpers/go-tools.js";
import { pushLayout } from "../test/helpers/images.js";
import { startRegistry } from "../test/helpers/registry.js";
import { writeHostsToml } from "./lib/compare-env.js";
import { loadavg } from "./lib/memory.js";
import { median } from "./lib/stats.js";
import { createContainer, runPod, startBerthd, startContainer } from "./lib/target.js";

const READS = ["ContainerStatus", "PodSandboxStatus", "ImageStatus", "ListImages", "Version"];
const ROUNDS = 200;
const BLOCKS = 5;
const o = new Command("read-warmup.bench")
  .option("--runs <n>", "client runs one after the other against the same berthd", "2")
  .parse()
  .opts<{ runs: string }>();

/** CPU time in ms of a process's main thread and of its other threads (schedstat: ns). */
function threadCpu(pid: number): { main: number; other: number } {
  let main = 0;
  let other = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    let ns = 0;
    try {
      ns = Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ")[0]);
    } catch {
      continue; // the thread ended
    }
    if (tid === String(pid)) main += ns / 1e6;
    else other += ns / 1e6;
  }
  return { main, other };
}

const client = goTool("cri-read-bench", "cri-read-bench");
console.log(`berthd node flags: ${berthdNodeFlags().join(" ")}; load average ${loadavg()}`);
const registry = await startRegistry();
try {
  const image = `${registry.host}/bench/busybox:1.29`;
  await pushLayout(buildCritestImages(), "busybox", image);
  const t = await startBerthd({ name: "berth", bridge: "berthrc0", subnet: "10.234.86.0/24" });
  try {
    writeHostsToml(join(dirname(t.logDir), "certs.d"), registry.host);
    await t.img.pullImage({ image: { image } }, { deadlineMs: 180_000 });
    const pod = await runPod(t, "warmup");
    const ctr = await createContainer(t, pod, image, "c", ["sleep", "100000"]);
    await startContainer(t, ctr);
    for (let run = 0; run < Number(o.runs); run++) {
      const before = threadCpu(t.pid!);
      const { stdout } = await promisify(execFile)(
        client,
        ["-socket", t.socket, "-method", READS.join(","), "-n", String(ROUNDS), "-warmup", "0", "-raw"].concat([
          "-id",
          ctr,
          "-pod",
          pod.id,
          "-image",
          image,
        ]),
        { encoding: "utf8" },
      );
      const after = threadCpu(t.pid!);
      console.log(
        `run ${run}: berthd CPU main thread ${(after.main - before.main).toFixed(0)} ms, ` +
          `other threads ${(after.other - before.other).toFixed(0)} ms; µs per block of ${ROUNDS / BLOCKS} rounds, then p50`,
      );
      for (const read of READS) {
        const line = new RegExp(`^${read} samples (.*)$`, "m").exec(stdout);
        if (!line) throw new Error(`cri-read-bench printed: ${stdout}`);
        const us = line[1]!.trim().split(/\s+/).map(Number);
        const size = us.length / BLOCKS;
        const blocks = Array.from({ length: BLOCKS }, (_, i) => median(us.slice(i * size, (i + 1) * size)));
        console.log(
          `  ${read.padEnd(17)} ${blocks.map((b) => b.toFixed(0).padStart(4)).join(" ")}   p50 ${median(us).toFixed(0)}`,
        );
      }
    }
  } finally {
    await t.close();
  }
} finally {
  await registry.stop();
}
