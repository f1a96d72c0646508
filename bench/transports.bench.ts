// `npm run bench:transports`: the transports a container runtime could speak, measured for the
// CRI's job on one machine over unix sockets: gRPC (grpc-js server; grpc-js and grpc-go
// clients), berth's ttrpc, HTTP/1.1 + JSON (undici -> node:http) and a Redis list used
// request/reply. Per transport: p50/p99 latency and calls/s of unary calls at 1 and 50
// concurrent callers, for a ~1 KiB ContainerStatus answer and a ~4 MiB ListContainers answer;
// and the server's RSS growth per idle connection. Not part of `npm test`.
//
//   npm run bench:transports -- [--quick] [--json bench/transports.json] [--only grpc,ttrpc]
//
// Everything runs in a private temp dir (sockets, redis-server with its own config on a unix
// socket, no TCP port); every process it starts is stopped at the end, also on Ctrl-C.
import { Command } from "commander";
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, totalmem } from "node:os";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { goTool } from "../test/helpers/go-tools.js";
import { idleConnection, open, type Kind } from "./lib/transport-clients.js";
import { goClient, rssKiB, startServer, stopProcess, timeCalls, type Timing } from "./lib/transport-measure.js";
import { encodedSize, type Size } from "./lib/transport-payloads.js";
import { RespClient } from "./lib/resp.js";

const log = (msg: string) => process.stderr.write(`[transports] ${msg}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Plan {
  calls: Record<Size, Record<1 | 50, number>>;
  idleConnections: number;
}
const FULL: Plan = { calls: { small: { 1: 2000, 50: 5000 }, large: { 1: 30, 50: 100 } }, idleConnections: 200 };
const QUICK: Plan = { calls: { small: { 1: 200, 50: 500 }, large: { 1: 5, 50: 50 } }, idleConnections: 50 };

export interface TransportRow {
  transport: string;
  client: string;
  size: Size;
  callers: number;
  timing: Timing;
}
export interface TransportResults {
  command: string;
  date: string;
  machine: Record<string, string | number>;
  messageBytes: Record<Size, number>;
  rows: TransportRow[];
  memory: { transport: string; process: string; connections: number; kibPerConnection: number }[];
}

const TRANSPORTS: { kind: Kind; name: string; client: string }[] = [
  { kind: "grpc", name: "gRPC (grpc-js server)", client: "grpc-js" },
  { kind: "grpc", name: "gRPC (grpc-js server)", client: "grpc-go" },
  { kind: "ttrpc", name: "ttrpc (berth src/ttrpc)", client: "berth ttrpc" },
  { kind: "http", name: "HTTP/1.1 + JSON (node:http)", client: "undici" },
  { kind: "redis", name: "Redis list request/reply", client: "RESP (bench/lib/resp.ts)" },
];

async function startRedis(dir: string): Promise<{ child: ChildProcess; socket: string }> {
  const socket = join(dir, "redis.sock");
  // A private config on the command line: no TCP port, no persistence, its own dir and log.
  const child = spawn(
    "redis-server",
    [
      "--port",
      "0",
      "--unixsocket",
      socket,
      "--unixsocketperm",
      "700",
      "--save",
      "",
      "--appendonly",
      "no",
      "--dir",
      dir,
      "--logfile",
      join(dir, "redis.log"),
      "--maxclients",
      "4096",
      "--daemonize",
      "no",
    ],
    { stdio: "ignore" },
  );
  for (let i = 0; i < 100 && !existsSync(socket); i++) await sleep(50);
  if (!existsSync(socket)) throw new Error(`redis-server did not listen on ${socket} (see ${dir}/redis.log)`);
  const c = await RespClient.open(socket);
  await c.command("PING");
  c.close();
  return { child, socket };
}

async function main(): Promise<void> {
  const opts = new Command()
    .option("--quick", "fewer calls (a smoke run)")
    .option("--json <file>", "where to write the results", "bench/transports.json")
    .option("--only <kinds>", "comma-separated subset of grpc,grpc-go,ttrpc,http,redis")
    .parse()
    .opts<{ quick?: boolean; json: string; only?: string }>();
  const plan = opts.quick ? QUICK : FULL;
  const only = opts.only?.split(",");
  const dir = mkdtempSync(join(tmpdir(), "berth-transports-"));
  const live = new Set<ChildProcess>();
  const cleanup = async () => {
    for (const c of live) await stopProcess(c);
    rmSync(dir, { recursive: true, force: true });
  };
  process.once("SIGINT", () => void cleanup().finally(() => process.exit(130)));
  const loadBefore = loadavg()
    .map((x) => x.toFixed(2))
    .join(" ");
  const results: TransportResults = {
    command: `npm run bench:transports${process.argv.length > 2 ? " -- " + process.argv.slice(2).join(" ") : ""}`,
    date: new Date().toISOString(),
    machine: {
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model ?? "",
      memGiB: Math.round(totalmem() / 2 ** 30),
      kernel: execFileSync("uname", ["-r"], { encoding: "utf8" }).trim(),
      node: process.version,
      redis: execFileSync("redis-server", ["--version"], { encoding: "utf8" }).split(" ")[2]?.replace("v=", "") ?? "",
      loadBefore,
      note: "shared machine: other builds and tests ran during the measurement",
    },
    messageBytes: { small: encodedSize("small"), large: encodedSize("large") },
    rows: [],
    memory: [],
  };
  try {
    const goBin = goTool("transport-bench-go");
    let redis: { child: ChildProcess; socket: string } | undefined;
    for (const t of TRANSPORTS) {
      const id = t.client === "grpc-go" ? "grpc-go" : t.kind;
      if (only && !only.includes(id)) continue;
      if (t.kind === "redis" && !redis) {
        redis = await startRedis(dir);
        live.add(redis.child);
      }
      const addr = t.kind === "redis" ? redis!.socket : join(dir, `${t.kind}.sock`);
      // Memory first, on a fresh server: the process that holds the connections.
      if (t.client !== "grpc-go") {
        const server = await startServer(t.kind, addr);
        live.add(server);
        const pid = t.kind === "redis" ? redis!.child.pid! : server.pid!;
        await sleep(500);
        const before = rssKiB(pid);
        const closers: (() => void)[] = [];
        for (let i = 0; i < plan.idleConnections; i++) closers.push(await idleConnection(t.kind, addr));
        await sleep(1000);
        const after = rssKiB(pid);
        closers.forEach((c) => c());
        results.memory.push({
          transport: t.name,
          process: t.kind === "redis" ? "redis-server" : "node (bench server)",
          connections: plan.idleConnections,
          kibPerConnection: Math.round(((after - before) / plan.idleConnections) * 10) / 10,
        });
        log(`${t.name}: ${results.memory.at(-1)!.kibPerConnection} KiB per idle connection`);
        await stopProcess(server);
        live.delete(server);
      }
      const server = await startServer(t.kind, addr);
      live.add(server);
      for (const size of ["small", "large"] as const) {
        for (const callers of [1, 50] as const) {
          const n = plan.calls[size][callers];
          let timing: Timing;
          if (t.client === "grpc-go") {
            timing = await goClient(goBin, addr, size === "small" ? "ContainerStatus" : "ListContainers", n, callers);
          } else {
            const o = await open(t.kind, addr, size, callers);
            try {
              timing = await timeCalls(o.calls, n, size === "small" ? 100 : 2);
            } finally {
              await o.close();
            }
          }
          results.rows.push({ transport: t.name, client: t.client, size, callers, timing });
          log(
            `${t.name} / ${t.client} ${size} x${callers}: p50 ${timing.p50Us} µs, p99 ${timing.p99Us} µs, ${timing.callsPerSec}/s`,
          );
        }
      }
      await stopProcess(server);
      live.delete(server);
    }
  } finally {
    await cleanup();
  }
  results.machine.loadAfter = loadavg()
    .map((x) => x.toFixed(2))
    .join(" ");
  writeFileSync(opts.json, JSON.stringify(results, null, 2) + "\n");
  log(`wrote ${opts.json}`);
  for (const r of results.rows)
    console.log(
      [r.transport, r.client, r.size, r.callers, r.timing.p50Us, r.timing.p99Us, r.timing.callsPerSec].join("\t"),
    );
}

await main();
