// The Stream* list RPCs (cri-api 1.36+) through grpc-go and k8s.io/cri-api v0.37.2 against a
// real berthd with pods and running containers: each stream carries the same items as its
// unary List* call, with the same filters (none, a pod id, a label selector). And the chunking
// on its own: a list longer than a chunk arrives whole, in order, over several messages.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { test } from "node:test";
import { containerStateToJSON, podSandboxStateToJSON } from "../../src/gen/cri/runtime/v1/api.js";
import type { StreamContext } from "../../src/cri/handlers.js";
import { chunks, STREAM_CHUNK, streamListHandlers } from "../../src/cri/stream-lists.js";
import { type CriEnv } from "../helpers/cri.js";
import { useCriEnv } from "../helpers/cri-fixture.js";
import { goTool } from "../helpers/go-tools.js";

interface StreamResult {
  messages: number;
  items: Record<string, unknown>[];
}
type Streams = Record<
  "podSandboxes" | "containers" | "containerStats" | "podSandboxStats" | "podSandboxMetrics" | "images",
  StreamResult
>;

const client = goTool("cri-stream-client");
let env: CriEnv;

useCriEnv({ bridge: "berthstr0", subnet: "10.234.82.0/24" }, (e) => (env = e));

function stream(...args: string[]): Streams {
  const out = execFileSync(client, ["-socket", env.d.socket, ...args], { encoding: "utf8", timeout: 90_000 });
  return JSON.parse(out) as Streams;
}

// protojson leaves out fields at their zero value: an enum's first value, empty maps and lists.
const sorted = <T>(xs: T[], key: (x: T) => string) => [...xs].sort((a, b) => key(a).localeCompare(key(b)));
const ids = (xs: string[]) => [...xs].sort();

async function compare(args: string[], filter: { pod?: string; labels?: Record<string, string> }): Promise<Streams> {
  const s = stream(...args);
  const rt = env.d.rt;
  const pods = (await rt.listPodSandbox({ filter: { id: filter.pod ?? "", labelSelector: filter.labels ?? {} } }))
    .items;
  assert.deepEqual(
    sorted(s.podSandboxes.items, (p) => p.id as string).map((p) => [p.id, p.state ?? "SANDBOX_READY", p.labels ?? {}]),
    sorted(pods, (p) => p.id).map((p) => [p.id, podSandboxStateToJSON(p.state), p.labels]),
    "StreamPodSandboxes = ListPodSandbox",
  );
  const containers = (
    await rt.listContainers({ filter: { podSandboxId: filter.pod ?? "", labelSelector: filter.labels ?? {}, id: "" } })
  ).containers;
  assert.deepEqual(
    sorted(s.containers.items, (c) => c.id as string).map((c) => [
      c.id,
      c.podSandboxId,
      c.state,
      c.imageRef,
      c.createdAt,
    ]),
    sorted(containers, (c) => c.id).map((c) => [
      c.id,
      c.podSandboxId,
      containerStateToJSON(c.state),
      c.imageRef,
      String(c.createdAt),
    ]),
    "StreamContainers = ListContainers",
  );
  const cstats = (
    await rt.listContainerStats({
      filter: { podSandboxId: filter.pod ?? "", labelSelector: filter.labels ?? {}, id: "" },
    })
  ).stats;
  assert.deepEqual(
    ids(s.containerStats.items.map((x) => (x.attributes as { id: string }).id)),
    ids(cstats.map((x) => x.attributes!.id)),
    "StreamContainerStats = ListContainerStats",
  );
  const pstats = (
    await rt.listPodSandboxStats({ filter: { id: filter.pod ?? "", labelSelector: filter.labels ?? {} } })
  ).stats;
  assert.deepEqual(
    ids(s.podSandboxStats.items.map((x) => (x.attributes as { id: string }).id)),
    ids(pstats.map((x) => x.attributes!.id)),
    "StreamPodSandboxStats = ListPodSandboxStats",
  );
  const metrics = (await rt.listPodSandboxMetrics({})).podMetrics;
  const metricIds = (m: { podSandboxId: string; containerMetrics: { containerId: string }[] }) =>
    `${m.podSandboxId}:${ids(m.containerMetrics.map((c) => c.containerId)).join(",")}`;
  assert.deepEqual(
    ids(
      s.podSandboxMetrics.items.map((m) =>
        metricIds({
          podSandboxId: m.podSandboxId as string,
          containerMetrics: (m.containerMetrics ?? []) as { containerId: string }[],
        }),
      ),
    ),
    ids(metrics.map(metricIds)),
    "StreamPodSandboxMetrics = ListPodSandboxMetrics",
  );
  const images = (await env.d.img.listImages({})).images;
  assert.deepEqual(
    sorted(s.images.items, (i) => i.id as string).map((i) => [i.id, i.repoTags ?? []]),
    sorted(images, (i) => i.id).map((i) => [i.id, i.repoTags]),
    "StreamImages = ListImages",
  );
  for (const [rpc, r] of Object.entries(s)) assert.ok(r.messages >= 1, `${rpc} sent at least one message`);
  return s;
}

test("each Stream* RPC carries what its List* call does, with the same filters", async () => {
  const a = await env.runPod("stream-a", { labels: { group: "a" } });
  const b = await env.runPod("stream-b", { labels: { group: "b" } });
  await env.runContainer(a, "a1", ["sleep", "1000"], { labels: { role: "web" } });
  await env.runContainer(a, "a2", ["sleep", "1000"], { labels: { role: "db" } });
  await env.runContainer(b, "b1", ["sleep", "1000"], { labels: { role: "web" } });

  const all = await compare([], {});
  assert.equal(all.podSandboxes.items.length, 2);
  assert.equal(all.containers.items.length, 3);
  assert.equal(all.containerStats.items.length, 3);
  assert.equal(all.images.items.length >= 1, true);

  const onlyA = await compare(["-pod", a.id], { pod: a.id });
  assert.deepEqual(
    onlyA.podSandboxes.items.map((p) => p.id),
    [a.id],
  );
  assert.equal(onlyA.containers.items.length, 2);

  // A label selector: pods labelled group=b; containers labelled... group=b too (none) — each
  // RPC applies it to its own items, as the unary calls do.
  const groupB = await compare(["-label", "group=b"], { labels: { group: "b" } });
  assert.deepEqual(
    groupB.podSandboxes.items.map((p) => p.id),
    [b.id],
  );
  const web = await compare(["-label", "role=web"], { labels: { role: "web" } });
  assert.equal(web.containers.items.length, 2);
  assert.equal(web.podSandboxes.items.length, 0, "no pod has the label role=web: an empty stream");

  for (const p of [a, b]) {
    await env.d.rt.stopPodSandbox({ podSandboxId: p.id }, { deadlineMs: 120_000 });
    await env.d.rt.removePodSandbox({ podSandboxId: p.id }, { deadlineMs: 120_000 });
  }
});

test("a list longer than a chunk arrives whole and in order over several messages", async () => {
  assert.deepEqual(chunks([]), [[]]);
  assert.deepEqual(chunks([1, 2, 3], 2), [[1, 2], [3]]);
  const n = STREAM_CHUNK * 2 + 7;
  const containers = Array.from({ length: n }, (_, i) => ({ id: `c${i}` }));
  let seenFilter: unknown;
  const { runtime } = streamListHandlers(
    {
      listContainers: async (req) => {
        seenFilter = req.filter;
        return { containers } as never;
      },
    },
    {},
  );
  assert.equal(runtime.streamPodSandboxes, undefined, "no stream without its unary list");
  const sent: { containers: { id: string }[] }[] = [];
  const ctx = {
    signal: new AbortController().signal,
    send: async (m: { containers: { id: string }[] }) => void sent.push(m),
  } as unknown as StreamContext<never> & { call: never };
  const filter = { id: "", podSandboxId: "p", labelSelector: { a: "b" } };
  await runtime.streamContainers!({ filter } as never, ctx as never);
  assert.deepEqual(seenFilter, filter, "the filter reaches the unary list");
  assert.deepEqual(
    sent.map((m) => m.containers.length),
    [STREAM_CHUNK, STREAM_CHUNK, 7],
  );
  assert.deepEqual(
    sent.flatMap((m) => m.containers.map((c) => c.id)),
    containers.map((c) => c.id),
  );
});
