// Timing and memory of one transport: latency percentiles and calls/s of a fixed number of
// calls spread over C callers, and the server's RSS growth per idle connection.
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { percentile } from "./stats.js";
import type { Call } from "./transport-clients.js";

export interface Timing {
  calls: number;
  p50Us: number;
  p99Us: number;
  callsPerSec: number;
}

/** `total` calls taken by `calls.length` callers in turn (each caller waits for its answer before its next call). */
export async function timeCalls(calls: Call[], total: number, warmup: number): Promise<Timing> {
  for (let i = 0; i < warmup; i++) await calls[i % calls.length]!();
  const lat: number[] = new Array<number>(total);
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    calls.map(async (call) => {
      for (let i = next++; i < total; i = next++) {
        const s = performance.now();
        await call();
        lat[i] = (performance.now() - s) * 1000;
      }
    }),
  );
  const ms = performance.now() - t0;
  return {
    calls: total,
    p50Us: Math.round(percentile(lat, 50)),
    p99Us: Math.round(percentile(lat, 99)),
    callsPerSec: Math.round((total / ms) * 1000),
  };
}

/** Resident set of a process, KiB. */
export function rssKiB(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]);
}

/** The grpc-go client's run (test/go/transport-bench-go), its JSON line parsed. */
export function goClient(bin: string, socket: string, method: string, n: number, concurrency: number): Promise<Timing> {
  return new Promise((resolve, reject) =>
    execFile(
      bin,
      ["-socket", socket, "-method", method, "-n", String(n), "-concurrency", String(concurrency), "-warmup", "20"],
      { timeout: 600_000, maxBuffer: 1 << 20 },
      (err, stdout, stderr) => {
        if (err) return reject(new Error(`transport-bench-go: ${err.message}\n${stderr}`));
        const r = JSON.parse(stdout) as { calls: number; p50Us: number; p99Us: number; callsPerSec: number };
        resolve({
          calls: r.calls,
          p50Us: Math.round(r.p50Us),
          p99Us: Math.round(r.p99Us),
          callsPerSec: Math.round(r.callsPerSec),
        });
      },
    ),
  );
}

/** Starts transport-server.js KIND ADDR and waits for its "ready". */
export async function startServer(kind: string, addr: string): Promise<ChildProcess> {
  const script = fileURLToPath(new URL("./transport-server.js", import.meta.url));
  const child = spawn(process.execPath, [script, kind, addr], { stdio: ["ignore", "pipe", "inherit"] });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once("data", () => resolve());
    child.once("exit", (code) => reject(new Error(`${kind} bench server exited with ${code}`)));
  });
  return child;
}

export async function stopProcess(child: ChildProcess, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once("exit", r));
  child.kill(signal);
  const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
  await exited;
  clearTimeout(timer);
}
