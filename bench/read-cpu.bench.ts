// Where a CRI read's time goes on the server: berthd's CPU per call and the p50 of each read
// kubelet polls (ContainerStatus, PodSandboxStatus, ImageStatus, ListImages, Version), beside a
// bare grpc-js server answering Version (bench/lib/bare-version-server.ts: the same generated
// CRI service definition, nothing around it). Every figure comes from the same grpc-go client,
// test/go/cri-read-bench (k8s.io/cri-client, as kubelet), one read in a loop on one connection.
// CPU per call is the server's utime+stime over the loop (warm-up included) divided by the
// calls: far less disturbed by a shared machine than the p50. Targets alternate round by round.
//
//   npx tsc -p tsconfig.json && node dist/bench/read-cpu.bench.js [--calls 3000] [--rounds 3]
//        [--methods Version,ContainerStatus,...] [--no-bare] [--paired] [--cpu-prof DIR]
//
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
import { createContainer, runPod, startBerthd, startContainer } from "./lib/target.js";

const METHODS = ["ContainerStatus", "PodSandboxStatus", "ImageStatus", "ListImages", "Version"];
const o = new Command("read-cpu.bench")
  .option("--calls <n>", "timed calls per read per round", "3000")
  .option("--warmup <n>", "untimed calls first, per read per round", "300")
  .option("--rounds <n>", "rounds; each runs every read once", "3")
  .option("--methods <list>", "the reads, comma-separated", METHODS.join(","))
  .option("--no-bare", "no bare grpc-js server")
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

/** One loop of the Go client; its p50 in µs. Asynchronous, so berthd's log pipe keeps draining. */
async function loop(socket: string, method: string, args: string[]): Promise<number> {
  const { stdout } = await promisify(execFile)(
    client,
    ["-socket", socket, "-method", method, "-n", String(calls), "-warmup", String(warmup), ...args],
    { encoding: "utf8" },
  );
  const m = /p50 ([\d.]+)/.exec(stdout);
  if (!m) throw new Error(`cri-read-bench printed: ${stdout}`);
  return Number(m[1]);
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
  await pushLayout(buildCritestImages(), "busybox", image);
  const t = await startBerthd({ name: "berth", bridge: "berthrc0", subnet: "10.234.86.0/24" });
  cleanups.push(() => t.close());
  writeHostsToml(join(dirname(t.logDir), "certs.d"), registry.host);
  await t.img.pullImage({ image: { image } }, { deadlineMs: 180_000 });
  const pod = await runPod(t, "reads");
  const ctr = await createContainer(t, pod, image, "c", ["sleep", "100000"]);
  await startContainer(t, ctr);
  const bare = o.bare && methods.includes("Version") ? await startBare() : undefined;
  if (bare) cleanups.push(() => bare.stop());

  const argsOf: Record<string, string[]> = {
    ContainerStatus: ["-id", ctr],
    PodSandboxStatus: ["-id", pod.id],
    ImageStatus: ["-image", image],
  };
  type Row = { name: string; socket: string; pid: number; method: string };
  const rows: Row[] = methods.map((m) => ({ name: `berthd ${m}`, socket: t.socket, pid: t.pid!, method: m }));
  const bareRow: Row | undefined = bare && {
    name: "bare grpc-js Version",
    socket: bare.socket,
    pid: bare.pid,
    method: "Version",
  };
  const p50s = new Map<string, number[]>();
  const cpu = new Map<string, { us: number; calls: number }>();
  /** Runs the rows' loops at the same time (each on its own server), recording each one. */
  const measure = async (group: Row[]) => {
    const c0 = group.map((r) => cpuMicros(r.pid));
    const p50 = await Promise.all(group.map((r) => loop(r.socket, r.method, argsOf[r.method] ?? [])));
    group.forEach((r, i) => {
      p50s.set(r.name, [...(p50s.get(r.name) ?? []), p50[i]!]);
      const c = cpu.get(r.name) ?? { us: 0, calls: 0 };
      cpu.set(r.name, { us: c.us + cpuMicros(r.pid) - c0[i]!, calls: c.calls + calls + warmup });
    });
  };
  const order: Row[] = [...rows, ...(bareRow ? [bareRow] : [])];
  for (let round = 0; round < Number(o.rounds); round++) {
    log(`round ${round + 1}`);
    if (o.paired && bareRow) for (const r of rows) await measure([r, bareRow]);
    else for (const r of order) await measure([r]);
  }
  console.log(
    `reads, ${o.rounds} rounds x ${calls} calls (+${warmup} warm-up) each${o.paired ? ", each berthd read paired with a bare Version loop" : ""}, grpc-go k8s.io/cri-client`,
  );
  console.log(`load average before ${loadBefore}, after ${loadavg()}`);
  console.log(`| ${"read".padEnd(28)} | p50 µs (median of rounds) | server CPU µs/call |`);
  console.log(`|${"-".repeat(30)}|--------------------------:|-------------------:|`);
  for (const r of order) {
    const c = cpu.get(r.name)!;
    console.log(
      `| ${r.name.padEnd(28)} | ${median(p50s.get(r.name)!).toFixed(0).padStart(25)} | ${(c.us / c.calls).toFixed(0).padStart(18)} |`,
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
