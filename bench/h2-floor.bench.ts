// The floor of a unary CRI call's server cost under three gRPC servers: a bare grpc-js server
// (bench/lib/bare-version-server.ts), a bare gRPC server on node:http2 directly
// (bench/lib/bare-h2-version-server.ts) and berth's own server on its own HTTP/2 connection with
// berthd's call wrapper (bench/lib/berth-own-version-server.ts), all answering Version, all driven by the same
// grpc-go client (test/go/cri-read-bench, k8s.io/cri-client as kubelet). Server CPU per call is
// utime+stime over the loop (warm-up included) / calls; targets alternate round by round, or
// run at the same time with --paired (same machine load for both CPU figures).
//   npx tsc -p tsconfig.json && node dist/bench/h2-floor.bench.js [--calls 5000] [--rounds 3] [--paired]
import { Command } from "commander";
import { execFile, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { promisify } from "node:util";
import { goTool } from "../test/helpers/go-tools.js";
import { loadavg } from "./lib/memory.js";
import { median } from "./lib/stats.js";

const o = new Command("h2-floor.bench")
  .option("--calls <n>", "timed calls per server per round", "5000")
  .option("--warmup <n>", "untimed calls first", "500")
  .option("--rounds <n>", "rounds", "3")
  .option("--paired", "both servers' loops at the same time")
  .parse()
  .opts<{ calls: string; warmup: string; rounds: string; paired?: boolean }>();
const calls = Number(o.calls);
const warmup = Number(o.warmup);

function cpuMicros(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10_000;
}

const client = goTool("cri-read-bench", "cri-read-bench");
async function loop(socket: string): Promise<number> {
  const { stdout } = await promisify(execFile)(
    client,
    ["-socket", socket, "-method", "Version", "-n", String(calls), "-warmup", String(warmup)],
    { encoding: "utf8" },
  );
  const m = /p50 ([\d.]+)/.exec(stdout);
  if (!m) throw new Error(`cri-read-bench printed: ${stdout}`);
  return Number(m[1]);
}

type Server = { name: string; socket: string; pid: number; stop(): void };
async function start(name: string, script: string): Promise<Server> {
  const dir = mkdtempSync(join(tmpdir(), "berth-floor-"));
  const socket = join(dir, "s.sock");
  const child = spawn(process.execPath, [new URL(script, import.meta.url).pathname, socket], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const stop = () => {
    child.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await new Promise<void>((res, rej) => {
      child.once("exit", (code) => rej(new Error(`${script} exited with ${code}`)));
      createInterface({ input: child.stdout! }).on("line", (l) => l === "ready" && res());
    });
  } catch (err) {
    stop();
    throw err;
  }
  return { name, socket, pid: child.pid!, stop };
}

const loadBefore = loadavg();
const servers: Server[] = [];
try {
  servers.push(await start("bare grpc-js", "./lib/bare-version-server.js"));
  servers.push(await start("bare node:http2", "./lib/bare-h2-version-server.js"));
  servers.push(await start("berth own HTTP/2", "./lib/berth-own-version-server.js"));
  const p50s = new Map<string, number[]>();
  const cpu = new Map<string, number>();
  const measure = async (group: Server[]) => {
    const c0 = group.map((s) => cpuMicros(s.pid));
    const p = await Promise.all(group.map((s) => loop(s.socket)));
    group.forEach((s, i) => {
      p50s.set(s.name, [...(p50s.get(s.name) ?? []), p[i]!]);
      cpu.set(s.name, (cpu.get(s.name) ?? 0) + cpuMicros(s.pid) - c0[i]!);
    });
  };
  for (let r = 0; r < Number(o.rounds); r++) {
    if (o.paired) await measure(servers);
    else for (const s of r % 2 ? [...servers].reverse() : servers) await measure([s]);
  }
  console.log(
    `Version, ${o.rounds} rounds x ${calls} calls (+${warmup} warm-up)${o.paired ? ", paired" : ""}, grpc-go k8s.io/cri-client`,
  );
  console.log(`load average before ${loadBefore}, after ${loadavg()}`);
  console.log(`| server              | p50 µs (median of rounds) | server CPU µs/call |`);
  console.log(`|---------------------|--------------------------:|-------------------:|`);
  for (const s of servers) {
    const perCall = cpu.get(s.name)! / (Number(o.rounds) * (calls + warmup));
    console.log(
      `| ${s.name.padEnd(19)} | ${median(p50s.get(s.name)!).toFixed(0).padStart(25)} | ${perCall.toFixed(0).padStart(18)} |`,
    );
  }
} finally {
  for (const s of servers) s.stop();
}
