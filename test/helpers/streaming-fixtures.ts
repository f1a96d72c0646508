// Streaming server test fixtures: a server over real host processes (HostBackend), and small
// helpers to watch stream output and stand in for a process listening in a pod.
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before } from "node:test";
import { StreamingServer } from "../../src/streaming/server.js";
import type { SpdyStream } from "../../src/streaming/spdy/connection.js";
import { HostBackend } from "./streaming-host-backend.js";

export const V4 = ["v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"];
export const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");
export const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function eventually(cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await delay(20);
  }
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Accumulates a stream's output and lets the test wait for some of it. */
export function watch(s: SpdyStream | undefined): { text: () => string; until: (re: RegExp) => Promise<void> } {
  const chunks: Buffer[] = [];
  s?.on("data", (c: Buffer) => chunks.push(c));
  const text = () => Buffer.concat(chunks).toString();
  return { text, until: (re) => eventually(() => re.test(text()), `output matching ${re}`) };
}

/** A little HTTP server standing in for a process listening inside the pod. */
export async function startTarget(body: string): Promise<{ port: number; close: () => Promise<void> }> {
  const srv = http.createServer((req, res) => {
    let got = "";
    req.on("data", (c: Buffer) => (got += c.toString()));
    req.on("end", () => res.end(`${body} ${req.method} ${req.url} ${got}`));
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  return {
    port: (srv.address() as net.AddressInfo).port,
    close: () => new Promise((r) => srv.close(() => r())),
  };
}

export const httpRequest = (path: string) =>
  Buffer.from(`POST ${path} HTTP/1.1\r\nHost: pod\r\nConnection: close\r\nContent-Length: 4\r\n\r\nping`);

// The one streaming server a test file shares, over a host backend, with a 10 MB file to send.
export let backend: HostBackend;
export let server: StreamingServer;
export let base: string;
export let tmp: string;
export let bigFile: string;
export let bigHash: string;
export const exec = (
  cmd: string[],
  o: Partial<{ tty: boolean; stdin: boolean; stdout: boolean; stderr: boolean }> = {},
) => server.getExecUrl({ containerId: "c1", cmd, tty: false, stdin: false, stdout: true, stderr: true, ...o });

/** Starts the server before the enclosing suite's tests and stops it, and whatever they ran, after. */
export function useStreamingServer(): void {
  before(async () => {
    tmp = mkdtempSync(join(tmpdir(), "berth-streaming-"));
    const big = randomBytes(10 * 1024 * 1024);
    bigFile = join(tmp, "big");
    writeFileSync(bigFile, big);
    bigHash = sha256(big);
    backend = new HostBackend();
    server = new StreamingServer({ backend, streamCreationTimeoutMs: 2000 });
    base = await server.start();
  });

  after(async () => {
    await server.stop();
    for (const c of backend.containers.values()) c.kill("SIGKILL");
    // A failed test may leave a command behind; each runs in its own process group.
    for (const c of backend.running) if (c.pid) process.kill(-c.pid, "SIGKILL");
    rmSync(tmp, { recursive: true, force: true });
  });
}
