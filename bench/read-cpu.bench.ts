// Where a CRI read's time goes on the server: berthd's CPU per call and the p50 of each read
// kubelet polls (ContainerStatus, PodSandboxStatus, ImageStatus, ListImages, Version), beside a
// bare grpc-js server answering Version (bench/lib/bare-version-server.ts: the same generated
// CRI service definition, nothing around it). Every figure comes from the same grpc-go client,
// test/go/cri-read-bench (k8s.io/cri-client, as kubelet), one read in a loop on one connection.
// CPU per call is the server's utime+stime over the loop (warm-up included) divided by the
// calls: far less disturbed by a shared machine than the p50. Targets alternate round by round.
//
//   npx tsc -p tsconfig.json && node dist/bench/read-cpu.bench.js [--calls 3000] [--rounds 3]
//        [--methods Version,ContainerStatus,...] [--no-bare] [--paired] [--containerd]
//        [--interleaved] [--cpu-prof DIR]
//
// --containerd adds containerd 2.4 (bench/lib/containerd.ts, as the side-by-side run starts it)
// with the same pod and container, so its CPU per call stands beside berthd's: the p50s of
// the side-by-side table differ by tens of µs, which its interleaved rounds cannot resolve.
// --paired runs each berthd read at the same time as a bare Version loop, so both servers see
// the same machine load: on a shared machine the CPU figures then compare well (the p50s do
// not: the two loops compete for the cores).
// --cpu-prof DIR runs berthd with `node --cpu-prof` (through BERTHD_NODE_FLAGS): the profile
// is written to DIR when berthd exits; name one method to attribute its calls alone.
// Everything it starts (registry, berthd, one pod with one container, bridge berthrc0 on
// 10.234.86.0/24, the bare server) is removed at the end, also on error.
import { Command } from "commander";
import { execFile, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { promisify } from "node:util";
import { buildCritestImages } from "../test/helpers/critest-images.js";
import { berthdNodeFlags } from "../test/helpers/daemon.js";
import { goTool } from "../test/helpers/go-tools.js";
import { pushLayout } from "../test/helpers/images.js";
import { startRegistry } from "../test/helpers/registry.js";
import { writeHostsToml } from "./lib/compare-env.js";
import { loadavg } from "./lib/memory.js";
import { median } from "./lib/stats.js";
import { startContainerd } from "./lib/containerd.js";
import { connectCri, createContainer, runPod, startBerthd, startContainer } from "./lib/target.js";

const METHODS = ["ContainerStatus", "PodSandboxStatus", "ImageStatus", "ListImages", "Version"];
const o = new Command("read-cpu.bench")
  .option("--calls <n>", "timed calls per read per round", "3000")
  .option("--warmup <n>", "untimed calls first, per read per round", "300")
  .option("--rounds <n>", "rounds; each runs every read once", "3")
  .option("--methods <list>", "the reads, comma-separated", METHODS.join(","))
  .option("--no-bare", "no bare grpc-js server")
  .option("--containerd", "also measure containerd 2.4 (built by scripts/go-tools.sh containerd-2.4-cri)")
  .option(
    "--interleaved",
    "one loop per server calling every read in turn, as kubelet's polls and the side-by-side run do",
  )
  .option("--paired", "each berthd read at the same time as a bare Version loop (fair CPU figures)")
  .option("--cpu-prof <dir>", "CPU-profile berthd into DIR (written when it exits)")
  .parse()
  .opts<{
    calls: string;
    warmup: string;
    rounds: string;
    methods: string;
    bare: boolean;
    paired?: boolean;
    containerd?: boolean;
    interleaved?: boolean;
    cpuProf?: string;
  }>();
const calls = Number(o.calls);
const warmup = Number(o.warmup);
const methods = o.methods.split(",").filter(Boolean);
for (const m of methods) if (!METHODS.includes(m)) throw new Error(`unknown method ${m}; one of ${METHODS}`);
const log = (msg: string) => process.stderr.write(`[read-cpu.bench] ${msg}\n`);

/** A process's CPU time so far in µs (utime + stime from /proc, 10 ms ticks). */
function cpuMicros(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10_000;
}

const client = goTool("cri-read-bench", "cri-read-bench");

/**
 * One loop of the Go client over one or more methods (interleaved); each method's p50 in µs.
 * Asynchronous, so berthd's log pipe keeps draining.
 */
async function loop(socket: string, methods: string[], args: string[]): Promise<number[]> {
  const { stdout } = await promisify(execFile)(
    client,
    ["-socket", socket, "-method", methods.join(","), "-n", String(calls), "-warmup", String(warmup), ...args],
    { encoding: "utf8" },
  );
  return methods.map((m) => {
    const found = new RegExp(`^${methods.length > 1 ? `${m} ` : ""}p50 ([\\d.]+)`, "m").exec(stdout);
    if (!found) throw new Error(`cri-read-bench printed: ${stdout}`);
    return Number(found[1]);
  });
}

/** The bare server in its own process; resolves once it serves. */
async function startBare(): Promise<{ socket: string; pid: number; stop(): void }> {
  const dir = mkdtempSync(join(tmpdir(), "berth-bare-"));
  const socket = join(dir, "bare.sock");
  const child = spawn(process.execPath, [new URL("./lib/bare-version-server.js", import.meta.url).pathname, socket], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const stop = () => {
    child.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await new Promise<void>((res, rej) => {
      child.once("exit", (code) => rej(new Error(`bare-version-server exited with ${code}`)));
      createInterface({ input: child.stdout! }).on("line", (l) => l === "ready" && res());
    });
  } catch (err) {
    stop();
    throw err;
  }
  return { socket, pid: child.pid!, stop };
}

if (o.cpuProf) {
  const dir = resolve(o.cpuProf);
  mkdirSync(dir, { recursive: true });
  process.env.BERTHD_NODE_FLAGS = [...berthdNodeFlags(), "--cpu-prof", `--cpu-prof-dir=${dir}`].join(" ");
}
const loadBefore = loadavg();
const registry = await startRegistry();
const cleanups: (() => Promise<void> | void)[] = [() => registry.stop()];
try {
  const image = `${registry.host}/bench/busybox:1.29`;
  const pause = `${registry.host}/bench/pause:3.10`;
  const layout = buildCritestImages();
  await pushLayout(layout, "busybox", image);
  if (o.containerd) await pushLayout(layout, "sandbox-pause", pause);
  const t = await startBerthd({ name: "berth", bridge: "berthrc0", subnet: "10.234.86.0/24" });
  cleanups.push(() => t.close());
  writeHostsToml(join(dirname(t.logDir), "certs.d"), registry.host);
  await t.img.pullImage({ image: { image } }, { deadlineMs: 180_000 });
  const pod = await runPod(t, "reads");
  const ctr = await createContainer(t, pod, image, "c", ["sleep", "100000"]);
  await startContainer(t, ctr);
  const bare = o.bare && methods.includes("Version") ? await startBare() : undefined;
  if (bare) cleanups.push(() => bare.stop());

  /** One loop: a server and the reads it times, one method or (--interleaved) all of them. */
  type Row = { name: string; socket: string; pid: number; methods: string[]; args: string[] };
  const rowsOf = (name: string, socket: string, pid: number, ids: { pod: string; ctr: string }): Row[] =>
    (o.interleaved ? [methods] : methods.map((m) => [m])).map((ms) => ({
      name: ms.length > 1 ? name : `${name} ${ms[0]}`,
      socket,
      pid,
      methods: ms,
      args: ["-id", ids.ctr, "-pod", ids.pod, "-image", image],
    }));
  let rows: Row[] = rowsOf("berthd", t.socket, t.pid!, { pod: pod.id, ctr });
  if (o.containerd) {
    const cd = await startContainerd(
      "2.4",
      { bridge: "berthrc1", subnet: "10.234.87.0/24" },
      registry.host,
      pause,
      log,
    );
    cleanups.push(() => cd.close());
    const c = connectCri(cd.name, cd.socket, cd.pid);
    cleanups.push(() => c.close());
    await c.img.pullImage({ image: { image } }, { deadlineMs: 180_000 });
    const cpod = await runPod(c, "reads");
    const cctr = await createContainer(c, cpod, image, "c", ["sleep", "100000"]);
    await startContainer(c, cctr);
    // interleaved with berthd's, read by read, so both see the same moments of a shared machine
    const theirs = rowsOf("containerd 2.4", cd.socket, cd.pid, { pod: cpod.id, ctr: cctr });
    rows = rows.flatMap((r, i) => [r, theirs[i]!]);
  }
  const bareRow: Row | undefined = bare && {
    name: "bare grpc-js Version",
    socket: bare.socket,
    pid: bare.pid,
    methods: ["Version"],
    args: [],
  };
  /** Per table line (server and method): the p50 of each round, and the server's CPU. */
  const p50s = new Map<string, number[]>();
  const cpu = new Map<string, { us: number; calls: number }>();
  const lines: string[] = [];
  const lineOf = (r: Row, m: string) => (r.methods.length > 1 ? `${r.name} ${m}` : r.name);
  /** Runs the rows' loops at the same time (each on its own server), recording each one. */
  const measure = async (group: Row[]) => {
    const c0 = group.map((r) => cpuMicros(r.pid));
    const p50 = await Promise.all(group.map((r) => loop(r.socket, r.methods, r.args)));
    group.forEach((r, i) => {
      // Interleaved, the CPU is the loop's, spread evenly over its methods' calls.
      const spent = cpuMicros(r.pid) - c0[i]!;
      r.methods.forEach((m, j) => {
        const line = lineOf(r, m);
        if (!p50s.has(line)) lines.push(line);
        p50s.set(line, [...(p50s.get(line) ?? []), p50[i]![j]!]);
        const c = cpu.get(line) ?? { us: 0, calls: 0 };
        cpu.set(line, { us: c.us + spent / r.methods.length, calls: c.calls + calls + warmup });
      });
    });
  };
  const order: Row[] = [...rows, ...(bareRow ? [bareRow] : [])];
  for (let round = 0; round < Number(o.rounds); round++) {
    log(`round ${round + 1}`);
    if (o.paired && bareRow) for (const r of rows) await measure([r, bareRow]);
    else for (const r of order) await measure([r]);
  }
  console.log(
    `reads, ${o.rounds} rounds x ${calls} calls (+${warmup} warm-up) each${o.interleaved ? " (interleaved: one of each read per turn; CPU is the loop's average)" : ""}${o.paired ? ", each berthd loop paired with a bare Version loop" : ""}, grpc-go k8s.io/cri-client`,
  );
  console.log(`load average before ${loadBefore}, after ${loadavg()}`);
  console.log(`| ${"read".padEnd(32)} | p50 µs (median of rounds) | server CPU µs/call |`);
  console.log(`|${"-".repeat(34)}|--------------------------:|-------------------:|`);
  for (const line of lines) {
    const c = cpu.get(line)!;
    console.log(
      `| ${line.padEnd(32)} | ${median(p50s.get(line)!).toFixed(0).padStart(25)} | ${(c.us / c.calls).toFixed(0).padStart(18)} |`,
    );
  }
} finally {
  for (const c of cleanups.reverse()) {
    try {
      await c();
    } catch (err) {
      log(`cleanup: ${(err as Error).message}`);
    }
  }
}
