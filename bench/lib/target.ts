// A CRI endpoint under benchmark: a private berthd started here (its own root, socket, CNI
// bridge and subnet, logging at info so debug output does not tax it), or any other CRI
// socket given by address (containerd's, for comparison).
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ImageServiceServer, PodSandboxConfig, RuntimeServiceServer } from "../../src/gen/cri/runtime/v1/api.js";
import { criClients, startDaemon, type PromiseClient, type TestDaemon } from "../../test/helpers/daemon.js";
import { daemonConfig } from "../../test/helpers/cri.js";

export type Pod = { id: string; config: Partial<PodSandboxConfig> };

export interface CriTarget {
  /** label in the table */
  name: string;
  socket: string;
  rt: PromiseClient<RuntimeServiceServer>;
  img: PromiseClient<ImageServiceServer>;
  /** the daemon's pid when known (for its memory) */
  pid?: number;
  /** a string in its shims' command lines (for shim memory) */
  shimMarker?: string;
  /** pods this run created: removed by cleanup() */
  pods: Set<string>;
  /** CRI calls of ours that create things, still running (close() waits for them) */
  inflight: number;
  /** set by close(): no new pods or containers */
  closing: boolean;
  logDir: string;
  close(): Promise<void>;
}

const DEADLINE = { deadlineMs: 180_000 };
const tag = `${process.pid.toString(36)}${Date.now().toString(36).slice(-4)}`;

export interface BerthdOptions {
  name: string;
  bridge: string;
  subnet: string;
  /**
   * Where the runtime state goes (berthd's --state, the runc handlers' root), as /run/berth on
   * a node; by default inside the daemon's own temporary directory.
   */
  runDir?: string;
}

/** Starts a private berthd with its own CNI bridge network (the approach of test/helpers/cri.ts). */
export async function startBerthd(o: BerthdOptions): Promise<CriTarget> {
  const dir = mkdtempSync(join(tmpdir(), "berth-bench-d-"));
  mkdirSync(join(dir, "net.d"), { recursive: true });
  const gw = o.subnet.replace(/\.0\/\d+$/, ".1");
  writeFileSync(
    join(dir, "net.d", "10-berth-bench.conflist"),
    JSON.stringify({
      cniVersion: "1.0.0",
      name: `berth-bench-${o.bridge}`,
      plugins: [
        {
          type: "bridge",
          bridge: o.bridge,
          isGateway: true,
          ipMasq: false,
          hairpinMode: true,
          ipam: {
            type: "host-local",
            ranges: [[{ subnet: o.subnet, gateway: gw }]],
            routes: [{ dst: "0.0.0.0/0" }],
            dataDir: join(dir, "ipam"),
          },
        },
        { type: "portmap", capabilities: { portMappings: true } },
      ],
    }),
  );
  let d: TestDaemon;
  try {
    d = await startDaemon({
      config: daemonConfig({ bridge: o.bridge, subnet: o.subnet, runtimeRoot: o.runDir }),
      ...(o.runDir ? { state: join(o.runDir, "state") } : {}),
      dir,
      keepDir: true,
      readyTimeoutMs: 60_000,
      args: ["--log-level", "info"],
    });
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const t: CriTarget = {
    name: o.name,
    socket: d.socket,
    rt: d.rt,
    img: d.img,
    pid: d.pid,
    shimMarker: d.socket,
    pods: new Set(),
    inflight: 0,
    closing: false,
    logDir: join(dir, "logs"),
    async close() {
      await removeAllPods(t);
      await d.stop();
      // the bridge plugin creates the bridge and never deletes it
      try {
        execFileSync("ip", ["link", "del", o.bridge], { stdio: "ignore" });
      } catch {
        // never created
      }
      // last: it fails (EBUSY) only if a pod's mounts survived, and then says where
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return t;
}

/** Any CRI endpoint, e.g. unix:///run/containerd/containerd.sock. */
export function connectCri(name: string, address: string, pid?: number): CriTarget {
  const socket = address.replace(/^unix:\/\//, "");
  const c = criClients(socket);
  const logDir = mkdtempSync(join(tmpdir(), "berth-bench-logs-"));
  const t: CriTarget = {
    name,
    socket,
    rt: c.rt,
    img: c.img,
    pid,
    shimMarker: undefined,
    pods: new Set(),
    inflight: 0,
    closing: false,
    logDir,
    async close() {
      await removeAllPods(t);
      c.close();
      rmSync(logDir, { recursive: true, force: true });
    },
  };
  return t;
}

/**
 * Removes every pod this run made, also after an interrupted run: waits for our creating
 * calls still in flight, then removes the pods we know of and those the endpoint lists
 * under this run's name prefix (a RunPodSandbox may have finished after we stopped waiting).
 */
async function removeAllPods(t: CriTarget): Promise<void> {
  t.closing = true;
  const deadline = Date.now() + 120_000;
  while (t.inflight > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  const listed = await t.rt.listPodSandbox({}).catch(() => ({ items: [] }));
  for (const p of listed.items) if (p.metadata?.name.startsWith(`bench-${tag}-`)) t.pods.add(p.id);
  for (const id of [...t.pods]) await removePod(t, id).catch(() => {});
}

/** Counts a creating call as in flight; refused once close() has begun. */
async function creating<T>(t: CriTarget, fn: () => Promise<T>): Promise<T> {
  if (t.closing) throw new Error(`${t.name} is closing`);
  t.inflight++;
  try {
    return await fn();
  } finally {
    t.inflight--;
  }
}

export async function removePod(t: CriTarget, id: string): Promise<void> {
  await t.rt.stopPodSandbox({ podSandboxId: id }, DEADLINE);
  await t.rt.removePodSandbox({ podSandboxId: id }, DEADLINE);
  t.pods.delete(id);
}

export async function runPod(t: CriTarget, name: string): Promise<Pod> {
  const n = `bench-${tag}-${name}`;
  const config = {
    metadata: { name: n, namespace: "berth-bench", uid: `${n}-uid`, attempt: 0 },
    hostname: name.slice(0, 60),
    logDirectory: join(t.logDir, n),
    linux: {},
  };
  const r = await creating(t, () => t.rt.runPodSandbox({ config, runtimeHandler: "" }, DEADLINE));
  t.pods.add(r.podSandboxId);
  return { id: r.podSandboxId, config: config as Partial<PodSandboxConfig> };
}

export async function createContainer(
  t: CriTarget,
  pod: Pod,
  image: string,
  name: string,
  args: string[],
): Promise<string> {
  const config = { metadata: { name, attempt: 0 }, image: { image }, args, logPath: `${name}.log`, linux: {} };
  const r = await creating(t, () =>
    t.rt.createContainer({ podSandboxId: pod.id, config, sandboxConfig: pod.config }, DEADLINE),
  );
  return r.containerId;
}

export async function startContainer(t: CriTarget, id: string): Promise<void> {
  await creating(t, () => t.rt.startContainer({ containerId: id }, DEADLINE));
}
