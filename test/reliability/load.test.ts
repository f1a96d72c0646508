// Load (issue 8, reliability): 50 concurrent clients, each on its own connection, issue mixed
// CRI calls (Version, Status, ListPodSandbox, ListContainers, ContainerStatus, ImageStatus,
// ExecSync on running containers) for a bounded time: no call fails, and latency percentiles
// per method are printed (not asserted: speed is measured in bench/). 10 s in CI; BERTH_LONG=1
// runs 120 s (BERTH_LOAD_SECONDS overrides).
import * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  ImageServiceClient,
  ImageServiceDefinition,
  RuntimeServiceClient,
  RuntimeServiceDefinition,
  type ImageServiceServer,
  type RuntimeServiceServer,
} from "../../src/gen/cri/runtime/v1/api.js";
import { type CriEnv } from "../helpers/cri.js";
import { useCriEnv } from "../helpers/cri-fixture.js";
import { CLIENT_OPTIONS, promiseClient } from "../helpers/daemon.js";

const LONG = process.env.BERTH_LONG === "1";
const SECONDS = Number(process.env.BERTH_LOAD_SECONDS ?? (LONG ? 120 : 10));
const CLIENTS = 50;

let env: CriEnv;

useCriEnv({ bridge: "berthrel3", subnet: "10.234.23.0/24" }, (e) => (env = e));

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

test(
  `load: ${CLIENTS} concurrent clients, mixed CRI calls for ${SECONDS} s`,
  { timeout: (SECONDS + 120) * 1000 },
  async () => {
    const pods = [await env.runPod("load-a"), await env.runPod("load-b")];
    const containers: string[] = [];
    for (const p of pods)
      for (const n of ["x", "y"]) containers.push(await env.runContainer(p, n, ["sleep", "100000"]));

    const creds = grpc.credentials.createInsecure();
    // Each client on its own connection, as separate kubelet/crictl/monitoring processes would be.
    const opts = { ...CLIENT_OPTIONS, "grpc.use_local_subchannel_pool": 1 };
    const clients = Array.from({ length: CLIENTS }, () => {
      const r = new RuntimeServiceClient(`unix://${env.d.socket}`, creds, opts);
      const i = new ImageServiceClient(`unix://${env.d.socket}`, creds, opts);
      return {
        raw: [r, i],
        rt: promiseClient<RuntimeServiceServer>(r, RuntimeServiceDefinition),
        img: promiseClient<ImageServiceServer>(i, ImageServiceDefinition),
      };
    });
    const pick = <T>(a: T[]) => a[Math.floor(Math.random() * a.length)]!;
    type C = (typeof clients)[number];
    const calls: [string, number, (c: C) => Promise<unknown>][] = [
      ["Version", 3, (c) => c.rt.version({})],
      ["Status", 2, (c) => c.rt.status({})],
      ["ListPodSandbox", 3, (c) => c.rt.listPodSandbox({})],
      ["ListContainers", 3, (c) => c.rt.listContainers({})],
      ["ContainerStatus", 3, (c) => c.rt.containerStatus({ containerId: pick(containers) })],
      ["ImageStatus", 2, (c) => c.img.imageStatus({ image: { image: env.images.busybox } })],
      [
        "ExecSync",
        1,
        async (c) => {
          const r = await c.rt.execSync(
            { containerId: pick(containers), cmd: ["echo", "ok"], timeout: 30n },
            { deadlineMs: 60_000 },
          );
          if (r.exitCode !== 0 || r.stdout.toString() !== "ok\n")
            throw new Error(`exec: exit ${r.exitCode} ${r.stdout.toString()} ${r.stderr.toString()}`);
        },
      ],
    ];
    const weighted = calls.flatMap((c) => Array.from({ length: c[1] }, () => c));
    const lat = new Map<string, number[]>(calls.map(([n]) => [n, []]));
    const errors: string[] = [];
    const end = Date.now() + SECONDS * 1000;
    try {
      await Promise.all(
        clients.map(async (c) => {
          while (Date.now() < end) {
            const [name, , fn] = pick(weighted);
            const t0 = performance.now();
            try {
              await fn(c);
              lat.get(name)!.push(performance.now() - t0);
            } catch (err) {
              errors.push(`${name}: ${(err as Error).message}`);
            }
          }
        }),
      );
    } finally {
      for (const c of clients) for (const r of c.raw) r.close();
    }

    const rows = [...lat].map(([name, l]) => {
      l.sort((a, b) => a - b);
      return l.length === 0
        ? `${name.padEnd(16)} ${"0".padStart(6)}`
        : `${name.padEnd(16)} ${String(l.length).padStart(6)} ${[50, 90, 99].map((p) => percentile(l, p).toFixed(1).padStart(9)).join("")}`;
    });
    const total = [...lat.values()].reduce((n, l) => n + l.length, 0);
    console.log(
      [
        `load: ${CLIENTS} clients, ${SECONDS} s, ${total} calls (${(total / SECONDS).toFixed(0)}/s), ${errors.length} errors`,
        `${"method".padEnd(16)} ${"calls".padStart(6)}   p50 ms   p90 ms   p99 ms`,
        ...rows,
      ].join("\n"),
    );
    assert.deepEqual(errors.slice(0, 20), [], `${errors.length} calls failed`);
    for (const [name, l] of lat) assert.ok(l.length > 0, `${name} was called`);

    for (const p of pods) {
      await env.d.rt.stopPodSandbox({ podSandboxId: p.id }, { deadlineMs: 60_000 });
      await env.d.rt.removePodSandbox({ podSandboxId: p.id }, { deadlineMs: 60_000 });
    }
  },
);
