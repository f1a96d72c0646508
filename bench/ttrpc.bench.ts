// ttrpc unary call throughput over a unix socket, client and server in separate processes
// (the server is this same file run with `--serve <path>`). Prints one line per figure.
// Run: npx tsc -p tsconfig.json && node dist/bench/ttrpc.bench.js
import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

import { KeyValue } from "../src/gen/ttrpc/request.js";
import { TtrpcClient, TtrpcServer, createClient } from "../src/ttrpc/index.js";

const EchoDefinition = {
  name: "Echo",
  fullName: "berth.bench.v1.Echo",
  methods: {
    echo: {
      name: "Echo",
      requestType: KeyValue,
      requestStream: false,
      responseType: KeyValue,
      responseStream: false,
      options: {},
    },
  },
} as const;

const CALLS = 10_000;

async function serve(path: string): Promise<void> {
  const server = new TtrpcServer();
  server.register(EchoDefinition, { echo: (req) => req });
  await server.listen(path);
  process.stdout.write("ready\n");
  process.on("SIGTERM", () => void server.close({ timeoutMs: 1000 }).then(() => process.exit(0)));
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "berth-ttrpc-bench-"));
  const path = join(dir, "bench.sock");
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), "--serve", path], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  try {
    await new Promise<void>((resolve, reject) => {
      child.stdout!.once("data", () => resolve());
      child.once("exit", (code) => reject(new Error(`bench server exited with ${code}`)));
    });
    const conn = await TtrpcClient.connect(path);
    const client = createClient(EchoDefinition, conn);
    const req = { key: "containerd-namespace-ttrpc", value: "k8s.io" };
    for (let i = 0; i < 1000; i++) await client.echo(req); // warm up

    let t0 = performance.now();
    for (let i = 0; i < CALLS; i++) await client.echo(req);
    let ms = performance.now() - t0;
    console.log(
      `ttrpc unary sequential: ${Math.round((CALLS / ms) * 1000)} calls/s (${CALLS} calls, ${ms.toFixed(0)} ms)`,
    );

    t0 = performance.now();
    await Promise.all(Array.from({ length: CALLS }, () => client.echo(req)));
    ms = performance.now() - t0;
    console.log(
      `ttrpc unary concurrent: ${Math.round((CALLS / ms) * 1000)} calls/s (${CALLS} calls in flight, ${ms.toFixed(0)} ms)`,
    );
    conn.close();
  } finally {
    child.kill("SIGTERM");
    await new Promise((r) => child.once("exit", r));
    await rm(dir, { recursive: true, force: true });
  }
}

const serveAt = process.argv.indexOf("--serve");
if (serveAt >= 0) await serve(process.argv[serveAt + 1]!);
else await main();
