// berthd's Prometheus metrics (prom-client registry) and the HTTP endpoint serving them in
// the text exposition format. Counters and histograms are updated as calls finish; pod,
// container and shim gauges are computed at scrape time from their source of truth, so
// they are never stale and nothing has to keep them in step.

import http from "node:http";
import type { AddressInfo } from "node:net";
import { createRequire } from "node:module";
import type { Counter, Histogram, Registry } from "prom-client";

// prom-client (with @opentelemetry/api, about 5 MiB of loaded modules) is required when the
// metrics are made, which berthd does only with a metrics endpoint configured (issue 15).
const require = createRequire(import.meta.url);

/** Live counts the gauges read at scrape time. */
export interface MetricsSources {
  /** Pods by CRI state name ("SANDBOX_READY", "SANDBOX_NOTREADY"). */
  pods?: () => Promise<Record<string, number>>;
  /** Containers by CRI state name ("CONTAINER_RUNNING", "CONTAINER_EXITED", ...). */
  containers?: () => Promise<Record<string, number>>;
  /** Live shim connections. */
  shims?: () => number;
}

export class BerthMetrics {
  readonly registry: Registry;
  private readonly requests: Counter<"method" | "code">;
  private readonly duration: Histogram<"method" | "code">;
  private readonly ttrpcDuration: Histogram<"method" | "code">;
  private readonly pullBytes: Counter;

  constructor(sources: MetricsSources = {}) {
    const { Counter, Gauge, Histogram, Registry } = require("prom-client") as typeof import("prom-client");
    this.registry = new Registry();
    const registers = [this.registry];
    this.requests = new Counter({
      name: "berth_cri_requests_total",
      help: "CRI calls served, by full method name and gRPC status code.",
      labelNames: ["method", "code"],
      registers,
    });
    this.duration = new Histogram({
      name: "berth_cri_request_duration_seconds",
      help: "Time to serve a CRI call, by method and gRPC status code.",
      labelNames: ["method", "code"],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers,
    });
    this.ttrpcDuration = new Histogram({
      name: "berth_shim_request_duration_seconds",
      help: "ttrpc calls from berthd to shims, by method and status code.",
      labelNames: ["method", "code"],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.pullBytes = new Counter({
      name: "berth_image_pull_bytes_total",
      help: "Image blob bytes downloaded from registries.",
      registers,
    });
    // Sources are looked up at each scrape: the composition root fills them in after building the services.
    const byState = (name: string, help: string, which: "pods" | "containers") =>
      new Gauge({
        name,
        help,
        labelNames: ["state"],
        registers,
        async collect() {
          this.reset();
          const read = sources[which];
          if (!read) return;
          for (const [state, n] of Object.entries(await read())) this.set({ state }, n);
        },
      });
    byState("berth_pods", "Pod sandboxes by CRI state.", "pods");
    byState("berth_containers", "Containers by CRI state.", "containers");
    new Gauge({
      name: "berth_shims",
      help: "Shim processes berthd is connected to.",
      registers,
      collect() {
        this.set(sources.shims?.() ?? 0);
      },
    });
  }

  /** Records one finished CRI call. */
  criCall(method: string, code: string, seconds: number): void {
    this.requests.inc({ method, code });
    this.duration.observe({ method, code }, seconds);
  }

  /** Records one finished ttrpc call to a shim. */
  shimCall(method: string, code: string, seconds: number): void {
    this.ttrpcDuration.observe({ method, code }, seconds);
  }

  addPullBytes(n: number): void {
    if (n > 0) this.pullBytes.inc(n);
  }
}

/** Splits "host:port" ("[::1]:9101" for IPv6). */
export function parseHostPort(address: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(address);
  if (!m) throw new Error(`metrics address ${JSON.stringify(address)} is not host:port`);
  const port = Number(m[3]);
  if (port > 65535) throw new Error(`metrics address ${JSON.stringify(address)}: port out of range`);
  return { host: m[1] ?? (m[2] || "127.0.0.1"), port };
}

export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\./.test(host);
}

/** Serves GET /metrics (and /) from the registry. Resolves once listening, with the bound address. */
export async function serveMetrics(
  metrics: BerthMetrics,
  address: string,
): Promise<{ url: string; close(): Promise<void> }> {
  const { host, port } = parseHostPort(address);
  const server = http.createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD" }).end();
      return;
    }
    if (path !== "/metrics" && path !== "/") {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found; metrics are at /metrics\n");
      return;
    }
    metrics.registry.metrics().then(
      (text) => res.writeHead(200, { "content-type": metrics.registry.contentType }).end(text),
      (err: unknown) => res.writeHead(500, { "content-type": "text/plain" }).end(`${String(err)}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const a = server.address() as AddressInfo;
  const hostPart = a.family === "IPv6" ? `[${a.address}]` : a.address;
  return {
    url: `http://${hostPart}:${a.port}/metrics`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
