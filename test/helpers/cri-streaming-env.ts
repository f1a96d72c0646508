// CRI streaming test fixtures: a private berthd with a pod running a plain container and busybox
// httpd, and helpers for the URLs the CRI streaming calls return.
import { existsSync, readdirSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import { after, before } from "node:test";
import type { SpdyStream } from "../../src/streaming/spdy/connection.js";
import { startCriEnv, testImages, until, type CriEnv } from "./cri.js";

export const V4 = ["v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"];
export const V5 = ["v5.channel.k8s.io", "v4.channel.k8s.io"];
export const TOKEN_TTL_MS = 3000;
export const BIG = 10 * 1024 * 1024;

export let env: CriEnv;
export let pod: { id: string; config: object };
/** A plain running container: `sleep`. */
export let box: string;
/** busybox httpd on port 8080 in the pod's network namespace. */
export let web: string;

export function code(err: unknown): number {
  return (err as { code: number }).code;
}

/** Accumulates a SPDY stream's output and lets the test wait for some of it. */
export function watch(s: SpdyStream | undefined): { text: () => string; until: (re: RegExp) => Promise<void> } {
  const chunks: Buffer[] = [];
  s?.on("data", (c: Buffer) => chunks.push(c));
  const text = () => Buffer.concat(chunks).toString();
  return {
    text,
    until: (re) =>
      until(() => re.test(text()), `output matching ${re} (have ${JSON.stringify(text())})`, 15_000).then(
        () => undefined,
      ),
  };
}

export async function execUrl(
  containerId: string,
  cmd: string[],
  o: Partial<{ tty: boolean; stdin: boolean; stdout: boolean; stderr: boolean }> = {},
): Promise<string> {
  const r = await env.d.rt.exec({ containerId, cmd, tty: false, stdin: false, stdout: true, stderr: true, ...o });
  return r.url;
}

/** The container's processes, as its own `ps` shows them. */
export async function ps(containerId: string): Promise<string> {
  return (await env.d.rt.execSync({ containerId, cmd: ["ps"], timeout: 10n })).stdout.toString();
}

/** Files in the container's IO directory other than its own stdio fifos. */
export function streamFiles(containerId: string): string[] {
  const dir = join(env.d.state, "io", containerId);
  return existsSync(dir) ? readdirSync(dir).filter((f) => !["stdin", "stdout", "stderr"].includes(f)) : [];
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

export const httpGet = (path: string) => Buffer.from(`GET ${path} HTTP/1.0\r\nHost: pod\r\n\r\n`);

/** One berthd with a pod running `box` and `web` for the test file, removed with its images after. */
export function useCriStreamingEnv(): void {
  before(async () => {
    env = await startCriEnv({
      bridge: "berthstr0",
      subnet: "10.234.6.0/24",
      config: `\n[streaming]\ntoken_ttl = "${TOKEN_TTL_MS / 1000}s"\n`,
    });
    await env.d.img.pullImage({ image: { image: env.images.busybox } }, { deadlineMs: 120_000 });
    pod = await env.runPod("streams");
    box = await env.runContainer(pod, "box", ["sleep", "100000"]);
    web = await env.runContainer(pod, "web", ["httpd", "-f", "-p", "8080", "-h", "/www"]);
  });

  after(async () => {
    await env?.stop();
    await testImages().then((i) => i.stop());
  });
}
