// The unary Version call's p50 on berthd's CRI socket, per kind of client connection (what the
// :authority transport in src/cri/transport/ may cost):
//   grpc-js, :authority localhost-like (berth's CLI and tests)     -> handed over as the native socket
//   grpc-js, :authority = the socket path                           -> proxied through the rewriter
//   grpc-go v1.49 dialing the socket path (kubelet/crictl 1.26)     -> proxied through the rewriter
//   grpc-go v1.49 with :authority localhost (newer clients)         -> native socket
// Each client makes its own connection; rounds alternate between them so machine load hits all
// alike; the figure is the median of the rounds' p50s.
//
//   npx tsc -p tsconfig.json && node dist/bench/version.bench.js [--calls 2000] [--rounds 5] [--no-go] [--no-js]
//
// On a shared machine run the grpc-js and grpc-go clients in separate runs (--no-go, --no-js):
// a grpc-go run disturbs the grpc-js figures of the round after it.
//
// The grpc-go client is test/go/cri-version-bench (built by scripts/go-tools.sh on first use).
// --bare adds a bare grpc-js server answering Version (bench/lib/bare-version-server.ts, its own
// process) measured by the same grpc-js client in the same rounds: the floor of berthd's figure.
import * as grpc from "@grpc/grpc-js";
import { Command } from "commander";
import { execFile, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { promisify } from "node:util";
import { RuntimeServiceClient, VersionRequest } from "../src/gen/cri/runtime/v1/api.js";
import { CLIENT_OPTIONS, startDaemon } from "../test/helpers/daemon.js";
import { goTool } from "../test/helpers/go-tools.js";
import { median, percentile } from "./lib/stats.js";

const opts = new Command()
  .option("--calls <n>", "timed calls per client per round", "2000")
  .option("--rounds <n>", "rounds", "5")
  .option("--no-go", "skip the grpc-go client")
  .option("--no-js", "skip the grpc-js clients")
  .option("--bare", "also a bare grpc-js server's Version (the floor), with the grpc-js client")
  .option(
    "--log-level <level>",
    "berthd's log level (info: as deployed; debug also counts the connection kinds)",
    "debug",
  )
  .parse()
  .opts<{ calls: string; rounds: string; go: boolean; js: boolean; bare?: boolean; logLevel: string }>();
const calls = Number(opts.calls);
const rounds = Number(opts.rounds);

/** berthd's CPU time so far in µs (utime + stime from /proc, 10 ms ticks). */
function cpuMicros(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10_000;
}

async function grpcJsP50(socket: string, authority: string | undefined): Promise<number> {
  const client = new RuntimeServiceClient(`unix://${socket}`, grpc.credentials.createInsecure(), {
    ...CLIENT_OPTIONS,
    ...(authority === undefined ? {} : { "grpc.default_authority": authority }),
  });
  const call = () =>
    new Promise<void>((resolve, reject) =>
      client.version(VersionRequest.fromPartial({ version: "v1" }), (err) => (err ? reject(err) : resolve())),
    );
  try {
    for (let i = 0; i < 300; i++) await call();
    const us: number[] = [];
    for (let i = 0; i < calls; i++) {
      const t0 = process.hrtime.bigint();
      await call();
      us.push(Number(process.hrtime.bigint() - t0) / 1e3);
    }
    return percentile(us, 50);
  } finally {
    client.close();
  }
}

async function grpcGoP50(bin: string, socket: string, authority: string | undefined): Promise<number> {
  const args = ["-socket", socket, "-n", String(calls), ...(authority ? ["-authority", authority] : [])];
  // Asynchronously: berthd's log pipe to this process must keep draining meanwhile.
  const { stdout: out } = await promisify(execFile)(bin, args, { encoding: "utf8" });
  const m = /p50 (\d+) us/.exec(out);
  if (!m) throw new Error(`cri-version-bench printed: ${out}`);
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
    await new Promise<void>((resolve, reject) => {
      child.once("exit", (code) => reject(new Error(`bare-version-server exited with ${code}`)));
      createInterface({ input: child.stdout! }).on("line", (l) => l === "ready" && resolve());
    });
  } catch (err) {
    stop();
    throw err;
  }
  return { socket, pid: child.pid!, stop };
}

const d = await startDaemon({ args: ["--log-level", opts.logLevel] });
const bare = opts.bare
  ? await startBare().catch(async (err: unknown) => (await d.stop(), Promise.reject(err)))
  : undefined;
try {
  const goBin = opts.go ? goTool("cri-version-bench") : undefined;
  const clients: [string, () => Promise<number>][] = [];
  const pidOf = new Map<string, number>();
  if (bare) {
    clients.push(["bare grpc-js server, grpc-js client", () => grpcJsP50(bare.socket, undefined)]);
    pidOf.set("bare grpc-js server, grpc-js client", bare.pid);
  }
  if (opts.js) {
    clients.push(["grpc-js, default :authority (native socket)", () => grpcJsP50(d.socket, undefined)]);
    clients.push(["grpc-js, :authority = socket path", () => grpcJsP50(d.socket, d.socket)]);
  }
  if (goBin && bare) {
    clients.push([
      "bare grpc-js server, grpc-go 1.49 :authority localhost",
      () => grpcGoP50(goBin, bare.socket, "localhost"),
    ]);
    pidOf.set("bare grpc-js server, grpc-go 1.49 :authority localhost", bare.pid);
  }
  if (goBin) {
    clients.push(["grpc-go 1.49, :authority = socket path", () => grpcGoP50(goBin, d.socket, undefined)]);
    clients.push(["grpc-go 1.49, :authority localhost", () => grpcGoP50(goBin, d.socket, "localhost")]);
  }
  const results = new Map<string, number[] | string>(clients.map(([name]) => [name, []]));
  // berthd's CPU per call (warm-up included) is far less disturbed by a loaded machine than latency.
  const cpu = new Map<string, number>(clients.map(([name]) => [name, 0]));
  for (let r = 0; r < rounds; r++) {
    for (const [name, run] of clients) {
      const acc = results.get(name);
      if (typeof acc === "string") continue;
      try {
        const pid = pidOf.get(name) ?? d.pid;
        const cpu0 = cpuMicros(pid);
        acc!.push(await run());
        cpu.set(name, cpu.get(name)! + cpuMicros(pid) - cpu0);
      } catch (err) {
        // The old transport refuses the socket path: report that instead of a figure.
        results.set(name, `fails: ${(err as Error).message.split("\n")[0]}`);
      }
    }
  }
  console.log(
    `Version per client, ${rounds} rounds x ${calls} calls: p50 (median of the rounds), server CPU per call (µs):`,
  );
  for (const [name, v] of results) {
    const perCall = cpu.get(name)! / (rounds * (calls + 300));
    console.log(
      `  ${name.padEnd(56)} ${typeof v === "string" ? v : `${median(v).toFixed(0).padStart(6)}   cpu ${perCall.toFixed(0).padStart(4)}`}`,
    );
  }
  const modes = [...d.logs().matchAll(/gRPC connection: (direct|rewriting)/g)].map((m) => m[1]);
  if (modes.length)
    console.log(
      `connections: ${modes.filter((m) => m === "direct").length} direct, ${modes.filter((m) => m === "rewriting").length} rewritten`,
    );
} finally {
  bare?.stop();
  await d.stop();
}
