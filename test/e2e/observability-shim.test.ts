// Traces reach into the shim: berthd sends its trace and span ids as ttrpc metadata, berth's
// shim times the OCI runtime commands it runs for such a call and publishes each as a
// /berth/trace/span event, and berthd nests it under the ttrpc span. A caller that sends no
// such metadata (containerd) gets no new events.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { TraceSpanEvent } from "../../src/gen/berth/v1/trace_event.js";
import { Tracer, type TraceRecord } from "../../src/observability/tracer.js";
import { berth } from "../helpers/cli.js";
import { startCriEnv, testImages, until, type CriEnv } from "../helpers/cri.js";
import { ShimHarness, sleep } from "../helpers/shim.js";

const TOPIC = "/berth/trace/span";

let h: ShimHarness;
let env: CriEnv;

before(async () => {
  h = await ShimHarness.create();
  env = await startCriEnv({ bridge: "berthobs1", subnet: "10.234.10.0/24" });
});

after(async () => {
  await h?.cleanup();
  await env?.stop();
  await testImages().then((i) => i.stop());
});

const createReq = (id: string) => h.createRequest(id, ["sleep", "3600"]);

function spanEvents(): TraceSpanEvent[] {
  return h.events
    .filter((e) => e.topic === TOPIC)
    .map((e) => {
      assert.equal(e.event?.typeUrl, "berth.v1.TraceSpanEvent");
      return TraceSpanEvent.decode(e.event.value);
    });
}

test("the shim reports runtime commands only for calls that carry berth's trace metadata", async () => {
  const plainReq = createReq("plain");
  const address = h.start(plainReq.bundle, "plain");
  const { task } = await h.connect(address);

  // As containerd calls it: the task's events, and nothing else.
  await task.create(plainReq, h.md);
  await task.start({ id: "plain", execId: "" }, h.md);
  await task.kill({ id: "plain", execId: "", signal: 9, all: false }, h.md);
  await task.wait({ id: "plain", execId: "" }, h.md);
  await task.delete({ id: "plain", execId: "" }, h.md);
  await until(() => h.topics("plain").includes("/tasks/delete"), "the plain task's delete event");
  assert.deepEqual(spanEvents(), []);
  assert.ok(!h.events.some((e) => e.topic === TOPIC || e.event?.typeUrl.includes("berth")));

  // As berthd calls it inside a traced CRI call.
  const traceId = "0123456789abcdef0123456789abcdef";
  const traced = (spanId: string) => ({
    metadata: { ...h.md.metadata, "berth-trace-id": traceId, "berth-span-id": spanId },
  });
  const before = BigInt(Date.now()) * 1_000_000n;
  await task.create(createReq("traced"), traced("00000000000000c1"));
  await task.start({ id: "traced", execId: "" }, traced("00000000000000c2"));
  await task.kill({ id: "traced", execId: "", signal: 9, all: false }, traced("00000000000000c3"));
  const spans = await until(() => {
    const s = spanEvents();
    return s.length >= 3 ? s : undefined;
  }, "three trace span events");
  const byParent = new Map(spans.map((s) => [s.parentSpanId, s]));
  const create = byParent.get("00000000000000c1");
  assert.equal(create?.name, "runc create");
  assert.equal(create.traceId, traceId);
  assert.equal(create.attributes["container.id"], "traced");
  assert.ok(create.durationNano > 0n, "runc create took time");
  assert.ok(create.startUnixNano >= before - 1_000_000_000n && create.startUnixNano <= BigInt(Date.now()) * 1_000_000n);
  assert.equal(byParent.get("00000000000000c2")?.name, "runc start");
  assert.equal(byParent.get("00000000000000c3")?.name, "runc kill");
  assert.match(byParent.get("00000000000000c3")!.attributes["runtime.args"] ?? "", /^kill traced 9$/);

  // Untraced calls after traced ones stay silent.
  await task.wait({ id: "traced", execId: "" }, h.md);
  await task.delete({ id: "traced", execId: "" }, h.md);
  await until(() => h.topics("traced").includes("/tasks/delete"), "the traced task's delete event");
  await sleep(200);
  assert.equal(spanEvents().length, 3);
});

interface JsonSpan {
  spanId: string;
  parentSpanId: string;
  name: string;
  durationNanos: string | number;
}

test("berth trace nests the shim's `runc run` under the ttrpc Create call of RunPodSandbox", async () => {
  await env.runPod("obs-shim");
  const addr = { BERTH_ADDRESS: env.d.socket };
  // The shim's report travels as an event: it may land just after the CRI call returned.
  const spans = await until(async () => {
    const r = await berth(["trace", "-f", "RunPodSandbox", "-n", "1", "-o", "json"], { env: addr });
    assert.equal(r.code, 0, r.stderr);
    const [t] = JSON.parse(r.stdout) as { spans: JsonSpan[] }[];
    return t?.spans.some((s) => s.name === "runc run") ? t.spans : undefined;
  }, "runc run in the RunPodSandbox trace");
  // The pause is created and started by one command (berthd's start-at-once Create), and that
  // Create confirms the start (berth's shim 0.2+): no Start call follows.
  const ttrpcCreate = spans.find((s) => s.name === "ttrpc containerd.task.v2.Task/Create");
  const runcRun = spans.find((s) => s.name === "runc run");
  assert.ok(ttrpcCreate && runcRun);
  assert.equal(runcRun.parentSpanId, ttrpcCreate.spanId);
  assert.ok(Number(runcRun.durationNanos) > 0);
  assert.ok(Number(runcRun.durationNanos) <= Number(ttrpcCreate.durationNanos), "the command ran within the call");
  assert.equal(
    spans.some((s) => s.name === "ttrpc containerd.task.v2.Task/Start"),
    false,
    "the Create confirmed the start: no Start call",
  );
  assert.deepEqual(
    spans.filter((s) => s.name.startsWith("runc ")).map((s) => s.name),
    ["runc run"],
    "one runtime command for the pause",
  );

  // The tree view shows it one level below the ttrpc call.
  const r = await berth(["trace", "-f", "RunPodSandbox", "-n", "1"], { env: addr });
  const lines = r.stdout.split("\n");
  const indent = (name: string) => {
    const l = lines.find((x) => x.trimStart().startsWith(name));
    assert.ok(l, `${name} in:\n${r.stdout}`);
    return l.length - l.trimStart().length;
  };
  assert.ok(indent("runc run") > indent("ttrpc containerd.task.v2.Task/Create"), r.stdout);
});

test("a reported span joins its trace even after it finished; unknown or evicted traces drop it", async () => {
  const tracer = new Tracer(1);
  const exported: TraceRecord[] = [];
  tracer.addExporter((t) => exported.push(structuredClone(t)));
  let ids: { traceId: string; spanId: string } | undefined;
  await tracer.root("cri", {}, () => tracer.span("ttrpc Create", {}, async () => (ids = tracer.currentIds())));
  assert.ok(ids);
  const report = (traceId: string, parentSpanId: string) =>
    tracer.addRemoteSpan({
      traceId,
      parentSpanId,
      name: "runc create",
      startNs: 1n,
      durationNs: 5n,
      attributes: { error: "boom" },
    });
  assert.equal(report(ids.traceId, ids.spanId), true);
  const [t] = tracer.find(ids.traceId);
  assert.deepEqual(
    t.spans.map((s) => [s.name, s.parentSpanId === "" ? "" : t.spans.find((p) => p.spanId === s.parentSpanId)?.name]),
    [
      ["cri", ""],
      ["ttrpc Create", "cri"],
      ["runc create", "ttrpc Create"],
    ],
  );
  assert.equal(t.spans[2].status, "UNKNOWN");
  assert.equal(t.spans[2].error, "boom");
  // the finished trace was exported already: the late span goes out on its own
  assert.deepEqual(
    exported.map((e) => e.spans.map((s) => s.name)),
    [["cri", "ttrpc Create"], ["runc create"]],
  );
  assert.equal(report(ids.traceId, "ffffffffffffffff"), false, "unknown parent");
  assert.equal(report("f".repeat(32), ids.spanId), false, "unknown trace");
  await tracer.root("next", {}, async () => undefined); // evicts the first trace (capacity 1)
  assert.equal(report(ids.traceId, ids.spanId), false, "evicted trace");
});
