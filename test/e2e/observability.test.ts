// Observability end to end: a private berthd with [metrics] on a loopback port and an OTLP
// collector (a tiny local HTTP receiver) serves CRI calls, including a real RunPodSandbox
// through CNI and berth's shim; then the metrics text, `berth trace` and the exported spans
// must show those calls with the right methods, codes, gauges and nested spans.
import { status as grpcStatus } from "@grpc/grpc-js";
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";
import { defaultConfig, parseConfig } from "../../src/daemon/config.js";
import { Tracer } from "../../src/observability/tracer.js";
import { berth } from "../helpers/cli.js";
import { startCriEnv, testImages, until, type CriEnv } from "../helpers/cri.js";

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = http.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
}
const received: OtlpSpan[] = [];
const collector = http.createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on("data", (c: Buffer) => chunks.push(c));
  req.on("end", () => {
    if (req.url === "/v1/traces" && req.headers["content-type"] === "application/json") {
      const body = JSON.parse(Buffer.concat(chunks).toString()) as {
        resourceSpans: { scopeSpans: { spans: OtlpSpan[] }[] }[];
      };
      for (const rs of body.resourceSpans) for (const ss of rs.scopeSpans) received.push(...ss.spans);
    }
    res.writeHead(200, { "content-type": "application/json" }).end("{}");
  });
});

let env: CriEnv;
let metricsUrl: string;

before(async () => {
  await new Promise<void>((r) => collector.listen(0, "127.0.0.1", r));
  const otlpPort = (collector.address() as AddressInfo).port;
  const metricsPort = await freePort();
  metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
  env = await startCriEnv({
    bridge: "berthobs0",
    subnet: "10.234.9.0/24",
    config: `
[metrics]
address = "127.0.0.1:${metricsPort}"

[tracing]
buffer_size = 64
otlp_endpoint = "http://127.0.0.1:${otlpPort}"
`,
  });
});

after(async () => {
  await env?.stop();
  await testImages().then((i) => i.stop());
  await new Promise((r) => collector.close(r));
});

async function scrape(): Promise<string> {
  const res = await fetch(metricsUrl);
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
  return res.text();
}

/** The value of one sample line, e.g. `name{a="b"} 3`. */
function sample(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(series + " "));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

const RT = "runtime.v1.RuntimeService";

test("metrics count CRI calls by method and code, time them, and gauge pods, containers, shims and pull bytes", async () => {
  const d = env.d;
  // The daemon helper itself calls Version (and more) while waiting for readiness: count from here.
  const base = await scrape();
  const calls = (text: string, method: string, code: string) => {
    const series = `berth_cri_requests_total{method="${method}",code="${code}"}`;
    return (sample(text, series) ?? 0) - (sample(base, series) ?? 0);
  };
  await d.rt.version({ version: "v1" });
  await d.rt.version({ version: "v1" });
  await d.rt.status({});
  await d.rt.listPodSandbox({});
  await assert.rejects(d.rt.checkpointContainer({ containerId: "x" }), { code: grpcStatus.UNIMPLEMENTED });
  await assert.rejects(d.rt.containerStatus({ containerId: "no-such-container" }), { code: grpcStatus.NOT_FOUND });
  await d.img.pullImage({ image: { image: env.images.busybox } }, { deadlineMs: 120_000 });
  const pod = await env.runPod("obs");
  await env.runContainer(pod, "sleeper", ["sleep", "3600"]);

  const text = await scrape();
  assert.equal(calls(text, `${RT}/Version`, "OK"), 2);
  assert.equal(calls(text, `${RT}/Status`, "OK"), 1);
  assert.equal(calls(text, `${RT}/ListPodSandbox`, "OK"), 1);
  assert.equal(calls(text, `${RT}/CheckpointContainer`, "UNIMPLEMENTED"), 1);
  assert.equal(calls(text, `${RT}/ContainerStatus`, "NOT_FOUND"), 1);
  assert.equal(calls(text, `${RT}/RunPodSandbox`, "OK"), 1);
  assert.equal(calls(text, `runtime.v1.ImageService/PullImage`, "OK"), 1);
  assert.match(text, /# TYPE berth_cri_request_duration_seconds histogram/);
  assert.ok((sample(text, `berth_cri_request_duration_seconds_count{method="${RT}/Version",code="OK"}`) ?? 0) >= 2);
  assert.equal(
    sample(text, `berth_cri_request_duration_seconds_bucket{le="+Inf",method="${RT}/RunPodSandbox",code="OK"}`),
    1,
  );
  const runSeconds = sample(text, `berth_cri_request_duration_seconds_sum{method="${RT}/RunPodSandbox",code="OK"}`);
  assert.ok(runSeconds !== undefined && runSeconds > 0, "RunPodSandbox took some time");
  // The shim calls under RunPodSandbox and StartContainer are timed too.
  assert.ok(
    (sample(text, `berth_shim_request_duration_seconds_count{method="containerd.task.v2.Task/Create",code="OK"}`) ??
      0) >= 2,
  );

  assert.equal(sample(text, `berth_pods{state="SANDBOX_READY"}`), 1);
  assert.equal(sample(text, `berth_containers{state="CONTAINER_RUNNING"}`), 1);
  assert.ok((sample(text, "berth_shims") ?? 0) >= 1, "a shim serves the pod");
  assert.ok((sample(text, "berth_image_pull_bytes_total") ?? 0) > 100_000, "busybox's layer bytes were counted");

  // Exited containers move between the state gauges at the next scrape.
  const [c] = (await d.rt.listContainers({})).containers;
  await d.rt.stopContainer({ containerId: c.id, timeout: 0n }, { deadlineMs: 60_000 });
  const later = await scrape();
  assert.equal(sample(later, `berth_containers{state="CONTAINER_EXITED"}`), 1);
  assert.equal(sample(later, `berth_containers{state="CONTAINER_RUNNING"}`), undefined);
});

test("berth trace shows RunPodSandbox as a tree down to the ttrpc call to the shim", async () => {
  const addr = { BERTH_ADDRESS: env.d.socket };
  const r = await berth(["trace", "-f", "RunPodSandbox", "-n", "1"], { env: addr });
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.split("\n");
  assert.match(lines[0], /^trace [0-9a-f]{32} {2}\d{4}-/);
  const indent = (name: string) => {
    const l = lines.find((x) => x.includes(name));
    assert.ok(l, `${name} in:\n${r.stdout}`);
    assert.match(l, /\d+(\.\d+)?(s|ms|µs)/, `a duration on ${l}`);
    return l.length - l.trimStart().length;
  };
  const root = indent(`${RT}/RunPodSandbox`);
  const net = indent("network.setupPod");
  const create = indent("runtime.createTask");
  const ttrpcCreate = indent("ttrpc containerd.task.v2.Task/Create");
  assert.ok(net > root && create > root, "service spans nest under the CRI call");
  assert.ok(ttrpcCreate > create, "the ttrpc Create nests under runtime.createTask");
  // berth's shim creates and starts the pause in that one Create (berth-start-confirmed):
  // there is no ttrpc Start to time.
  assert.ok(!lines.some((l) => l.includes("Task/Start")), `no ttrpc Start in:\n${r.stdout}`);

  // One trace by id, as JSON; an unknown id is a clear error.
  const traceId = lines[0].split(" ")[1];
  const one = await berth(["trace", "-o", "json", traceId.slice(0, 12)], { env: addr });
  assert.equal(one.code, 0, one.stderr);
  const [t] = JSON.parse(one.stdout) as {
    traceId: string;
    spans: { name: string; parentSpanId: string; status: string }[];
  }[];
  assert.equal(t.traceId, traceId);
  assert.equal(t.spans[0].name, `${RT}/RunPodSandbox`);
  assert.equal(t.spans[0].parentSpanId, "");
  assert.ok(t.spans.every((s) => s.status === "OK"));
  const missing = await berth(["trace", "ffffffffffff"], { env: addr });
  assert.notEqual(missing.code, 0);
  assert.match(missing.stderr, /no trace "ffffffffffff"/);

  // Failed calls carry their code; --last counts the newest.
  const last = await berth(["trace", "-f", "CheckpointContainer", "--last", "5"], { env: addr });
  assert.match(last.stdout, /CheckpointContainer .* UNIMPLEMENTED: .*not implemented/);

  // The same trace reached the OTLP collector with its parent links.
  const exported = await until(() => {
    const spans = received.filter((s) => s.traceId === traceId);
    return spans.length >= 4 ? spans : undefined;
  }, "RunPodSandbox spans at the OTLP collector");
  const rootSpan = exported.find((s) => s.name === `${RT}/RunPodSandbox`);
  assert.ok(rootSpan);
  assert.match(rootSpan.spanId, /^[0-9a-f]{16}$/);
  assert.ok(exported.some((s) => s.name === "ttrpc containerd.task.v2.Task/Create" && s.parentSpanId !== ""));
});

test("the metrics endpoint is off unless configured, and listens on loopback", async () => {
  assert.equal(defaultConfig().metrics.address, "");
  assert.equal(parseConfig(`[metrics]\naddress = "127.0.0.1:9101"\n`, "t.toml").metrics.address, "127.0.0.1:9101");
  assert.throws(() => parseConfig(`[metrics]\naddress = "9101"\n`, "t.toml"), /host:port/);
  assert.throws(() => parseConfig(`[tracing]\notlp_endpoint = "collector:4318"\n`, "t.toml"), /http/);
  const res = await fetch(metricsUrl.replace(/\/metrics$/, "/nope"));
  assert.equal(res.status, 404);
  await res.text();
  assert.match(metricsUrl, /^http:\/\/127\.0\.0\.1:/);
});

test("spans nest through async calls and the tracer keeps only the last N traces", async () => {
  const tracer = new Tracer(2);
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  for (const name of ["a", "b", "c"]) {
    await tracer.root(name, {}, async () => {
      await Promise.all([
        tracer.span("x", {}, async () => {
          await sleep(2);
          await tracer.span("y", {}, () => sleep(1));
        }),
        tracer.span("z", {}, () => Promise.reject(new Error("boom"))).catch(() => undefined),
      ]);
    });
  }
  // Outside a trace a span just runs.
  assert.equal(await tracer.span("orphan", {}, async () => 7), 7);
  const kept = tracer.recent(10);
  assert.deepEqual(
    kept.map((t) => t.spans[0].name),
    ["b", "c"],
  );
  const [root, x, z, y] = kept[1].spans;
  assert.deepEqual([root.name, x.name, z.name, y.name], ["c", "x", "z", "y"]);
  assert.equal(x.parentSpanId, root.spanId);
  assert.equal(z.parentSpanId, root.spanId);
  assert.equal(y.parentSpanId, x.spanId);
  assert.equal(z.status, "UNKNOWN");
  assert.equal(z.error, "boom");
  assert.ok(x.durationNs! >= y.durationNs!);
  assert.ok(root.durationNs! >= x.durationNs!);
});
