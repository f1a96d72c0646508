// What kubelet's PLEG costs berthd: it calls ListPodSandbox and ListContainers every second
// (and ContainerStatus / PodSandboxStatus for what changed), so these must be answered
// without a round trip per container. A private berthd gets pods with running `sleep`
// containers (and optionally created-but-not-started ones); then, each beside the empty
// Version call on the same socket (the gRPC round trip, the floor):
//   ListContainers, ListPodSandbox, ContainerStatus, PodSandboxStatus    serially, p50 / p99
//   ListContainers from 50 clients at once                                 per-call p50 / p99, calls/s
//   Version while those 50 clients run                                     (is the event loop free?)
//
//   npx tsc -p tsconfig.json && node dist/bench/list.bench.js [--running 200] [--created 0]
//        [--pods 4] [--samples 50] [--clients 50] [--rounds 10] [--json FILE]
//
// Bridge berthbenchl, 10.234.45.0/24; everything it makes is removed at the end.
import { Command } from "commander";
import { writeFileSync } from "node:fs";
import { testImages } from "../test/helpers/cri.js";
import { criClients } from "../test/helpers/daemon.js";
import { loadavg } from "./lib/memory.js";
import { percentile, pool, timed } from "./lib/stats.js";
import { createContainer, runPod, startBerthd, startContainer, type CriTarget, type Pod } from "./lib/target.js";

interface Opts {
  running: string;
  created: string;
  pods: string;
  samples: string;
  clients: string;
  rounds: string;
  json?: string;
  bridge: string;
  subnet: string;
}

const log = (msg: string) => process.stderr.write(`[list-bench] ${msg}\n`);

interface Figure {
  metric: string;
  p50: number;
  p99: number;
  n: number;
}

async function samples(n: number, fn: (i: number) => Promise<unknown>): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push((await timed(() => fn(i)))[0]);
  return out;
}

function figure(metric: string, xs: number[]): Figure {
  return { metric, p50: percentile(xs, 50), p99: percentile(xs, 99), n: xs.length };
}

async function main(): Promise<void> {
  const o = new Command("list-bench")
    .option("--running <n>", "running `sleep` containers", "200")
    .option("--created <n>", "containers created but not started", "0")
    .option("--pods <n>", "pods they are spread over", "4")
    .option("--samples <n>", "serial samples per call", "50")
    .option("--clients <n>", "concurrent ListContainers clients", "50")
    .option("--rounds <n>", "ListContainers calls per concurrent client", "10")
    .option("--json <file>", "also write the figures as JSON")
    .option("--bridge <name>", "CNI bridge of the bench's berthd", "berthbenchl")
    .option("--subnet <cidr>", "its pod /24", "10.234.45.0/24")
    .parse()
    .opts<Opts>();
  const running = Number(o.running);
  const created = Number(o.created);
  const podCount = Number(o.pods);
  const n = Number(o.samples);
  const clients = Number(o.clients);
  const rounds = Number(o.rounds);
  const load0 = loadavg();
  const images = await testImages();
  let t: CriTarget | undefined;
  try {
    t = await startBerthd({ name: "berth", bridge: o.bridge, subnet: o.subnet });
    const target = t;
    await t.img.pullImage({ image: { image: images.busybox } }, { deadlineMs: 180_000 });
    log(`${podCount} pods, ${running} running and ${created} created containers`);
    const pods: Pod[] = [];
    for (let i = 0; i < podCount; i++) pods.push(await runPod(t, `list${i}`));
    const ids = await pool(running + created, 4, async (i) => {
      const id = await createContainer(target, pods[i % podCount]!, images.busybox, `c${i}`, ["sleep", "100000"]);
      if (i < running) await startContainer(target, id);
      return id;
    });
    const listed = await t.rt.listContainers({}, { deadlineMs: 60_000 });
    if (listed.containers.length !== ids.length)
      throw new Error(`ListContainers returned ${listed.containers.length} of ${ids.length} containers`);

    log(`serial calls, ${n} samples each`);
    const rt = t.rt;
    const figures: Figure[] = [];
    // Warm-up: first calls pay for JIT and connection setup.
    for (let i = 0; i < 3; i++) await rt.listContainers({}, { deadlineMs: 60_000 });
    figures.push(figure("Version (floor)", await samples(n, () => rt.version({}))));
    figures.push(
      figure(`ListContainers (${ids.length})`, await samples(n, () => rt.listContainers({}, { deadlineMs: 60_000 }))),
    );
    figures.push(
      figure(
        `ListContainers state=RUNNING filter`,
        await samples(n, () => rt.listContainers({ filter: { state: { state: 1 } } }, { deadlineMs: 60_000 })),
      ),
    );
    figures.push(
      figure(`ListPodSandbox (${podCount})`, await samples(n, () => rt.listPodSandbox({}, { deadlineMs: 60_000 }))),
    );
    figures.push(
      figure(
        "ContainerStatus (running)",
        await samples(n, (i) => rt.containerStatus({ containerId: ids[i % Math.max(1, running)]! })),
      ),
    );
    figures.push(
      figure(
        "PodSandboxStatus",
        await samples(n, (i) => rt.podSandboxStatus({ podSandboxId: pods[i % podCount]!.id })),
      ),
    );
    // kubelet's relist: both lists, then a status per container (here: all of them, once).
    const [relistMs] = await timed(async () => {
      await rt.listPodSandbox({});
      await rt.listContainers({});
      await pool(ids.length, 8, (i) => rt.containerStatus({ containerId: ids[i]! }));
    });

    log(`${clients} clients x ${rounds} ListContainers at once`);
    const conns = Array.from({ length: clients }, () => criClients(target.socket));
    const probe = criClients(target.socket);
    try {
      await Promise.all(conns.map((c) => c.rt.version({})));
      await probe.rt.version({});
      const perCall: number[] = [];
      const versionUnderLoad: number[] = [];
      let done = false;
      const prober = (async () => {
        while (!done) {
          versionUnderLoad.push((await timed(() => probe.rt.version({}, { deadlineMs: 120_000 })))[0]);
          await new Promise((r) => setTimeout(r, 20));
        }
      })();
      const [wallMs] = await timed(() =>
        Promise.all(
          conns.map(async (c) => {
            for (let r = 0; r < rounds; r++) {
              perCall.push((await timed(() => c.rt.listContainers({}, { deadlineMs: 300_000 })))[0]);
            }
          }),
        ),
      );
      done = true;
      await prober;
      figures.push(figure(`ListContainers, ${clients} clients at once`, perCall));
      figures.push(figure(`Version during that`, versionUnderLoad));
      const throughput = perCall.length / (wallMs / 1000);
      const load1 = loadavg();
      const head = `berthd state listing: ${podCount} pods, ${running} running + ${created} created containers; loadavg before ${load0}, after ${load1}`;
      console.log(head);
      console.log(`${"call".padEnd(44)} ${"p50 ms".padStart(9)} ${"p99 ms".padStart(9)} ${"n".padStart(5)}`);
      for (const f of figures) {
        console.log(
          `${f.metric.padEnd(44)} ${f.p50.toFixed(2).padStart(9)} ${f.p99.toFixed(2).padStart(9)} ${String(f.n).padStart(5)}`,
        );
      }
      console.log(
        `${clients}-client ListContainers: ${perCall.length} calls in ${wallMs.toFixed(0)} ms = ${throughput.toFixed(1)} calls/s`,
      );
      console.log(
        `relist (ListPodSandbox + ListContainers + ContainerStatus of all ${ids.length}): ${relistMs.toFixed(0)} ms`,
      );
      if (o.json) {
        writeFileSync(
          o.json,
          JSON.stringify(
            {
              started: new Date().toISOString(),
              sizes: { pods: podCount, running, created, samples: n, clients, rounds },
              load: { before: load0, after: load1 },
              figures,
              concurrent: { calls: perCall.length, wallMs, callsPerSecond: throughput },
              relistMs,
            },
            null,
            2,
          ) + "\n",
        );
      }
    } finally {
      for (const c of conns) c.close();
      probe.close();
    }
  } finally {
    log("cleaning up");
    await t?.close().catch((err: Error) => log(`cleanup: ${err.message}`));
    await images.stop();
  }
}

await main();
