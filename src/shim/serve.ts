// The serving shim: one process per (namespace, caller address) group, serving the Task
// API for all of that group's tasks on <root>/<group>.sock. Spawned by `start`; tells it
// "ready" (or "exists", when another serving shim won the socket) on fd 3.
import { closeSync, mkdirSync, unlinkSync, writeSync } from "node:fs";
import { link, unlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";

import { TaskDefinition } from "../gen/containerd/runtime/v2/task/shim.js";
import { TtrpcServer } from "../ttrpc/index.js";
import { TtrpcPublisher } from "./events.js";
import type { ShimFlags } from "./flags.js";
import { monitorPath } from "./paths.js";
import { probe } from "./probe.js";
import { startReaper } from "./reaper.js";
import { TaskService } from "./service.js";
import { publishingSink, setSpanSink, withTraceContext } from "./trace.js";
import { mallocTrim } from "../sys/index.js";
import { startIdleTrim } from "../util/idle-trim.js";

export function log(msg: string): void {
  process.stderr.write(`${new Date().toISOString()} berth-shim[${process.pid}] ${msg}\n`);
}

function tellParent(word: string): void {
  try {
    writeSync(3, `${word}\n`);
    closeSync(3);
  } catch {
    // not started by `start` (e.g. run by hand)
  }
}

export async function serve(flags: ShimFlags): Promise<void> {
  const sockPath = flags.socket;
  if (!sockPath) throw new Error("serving needs -socket");
  const root = dirname(sockPath);
  const group = basename(sockPath, ".sock");
  mkdirSync(root, { recursive: true, mode: 0o700 });
  process.chdir(root);
  startReaper();

  const publisher = new TtrpcPublisher(process.env.TTRPC_ADDRESS ?? "", log);
  let exiting = false;
  const server = new TtrpcServer({ logger: { warn: (o, m) => log(`${m} ${String(o.err ?? "")}`) } });
  const exit = async (why: string) => {
    if (exiting) return;
    exiting = true;
    log(`exiting: ${why}`);
    // Unlink first: a `start` from now on spawns a fresh shim instead of finding us. In the
    // same tick as the decision to exit (no event-loop turn in between), so the idle check's
    // "no client" still holds: no connection can be accepted between it and the unlink.
    try {
      unlinkSync(sockPath);
    } catch {
      // already gone
    }
    service.detachAll();
    await server.close({ timeoutMs: 1000 }).catch(() => {});
    await publisher.close();
    process.exit(0);
  };
  const service: TaskService = new TaskService({
    root,
    group,
    namespace: flags.namespace,
    publisher,
    monitorBin: monitorPath(),
    logFd: 2,
    log,
    onEmpty: () => void exit("shutdown with no tasks left"),
  });
  // Runtime commands run for a call berthd traces are published back to it as spans.
  setSpanSink(
    publishingSink(
      (ns, topic, type, codec, ev) => publisher.publish(ns || flags.namespace, topic, type, codec, ev),
      log,
    ),
  );
  server.register(TaskDefinition, withTraceContext(service));

  // Listen on a private name, then claim the group's name with link(2), which fails if
  // it exists: of two shims racing for a group exactly one wins, atomically.
  // `start`, and containerd behind it, only see silence while this is not ready: a start that
  // takes long says in the log which step it is in.
  let phase = "listening";
  const startedAt = Date.now();
  const watchdog = setInterval(
    () => log(`not ready yet: ${phase} for ${Math.round((Date.now() - startedAt) / 1000)} s`),
    10_000,
  );
  const tmp = join(root, `.${group}.${process.pid}.sock`);
  await server.listen(tmp, { mode: 0o600 });
  for (;;) {
    try {
      phase = "claiming the group socket";
      await link(tmp, sockPath);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      phase = "probing the shim on the group socket";
      if (await probe(sockPath)) {
        await server.close({ timeoutMs: 0 });
        await unlink(tmp).catch(() => {});
        tellParent("exists");
        log("another shim serves this group");
        process.exit(0);
      }
      await unlink(sockPath).catch(() => {});
    }
  }
  phase = "removing the private socket name";
  await unlink(tmp).catch(() => {});

  phase = "adopting recorded tasks";
  const adopted = await service.adopt();
  clearInterval(watchdog);
  log(`serving ${sockPath} (namespace ${flags.namespace}, ${adopted} task(s) adopted)`);
  tellParent("ready");

  process.on("SIGTERM", () => void exit("SIGTERM"));
  process.on("SIGINT", () => void exit("SIGINT"));
  // A shim with no task and no client is of use to nobody: berthd keeps an idle shim warm
  // for its next pod, but if berthd then dies nobody would ever call Shutdown. containerd
  // always connects right after `start`, so the grace period never cuts a real user short.
  const idleExitMs = Number(process.env.BERTH_SHIM_IDLE_EXIT_MS ?? 60_000);
  let idleSince: number | undefined;
  setInterval(
    () => {
      if (service.taskCount > 0 || server.connectionCount > 0) {
        idleSince = undefined;
      } else if (idleSince === undefined) {
        idleSince = Date.now();
      } else if (Date.now() - idleSince >= idleExitMs) {
        void exit(`idle for ${Math.round(idleExitMs / 1000)} s with no task and no client`);
      }
    },
    Math.min(5000, Math.max(100, idleExitMs / 4)),
  );
  // What a burst of task calls left behind goes back once the shim is quiet (src/util/idle-trim.ts).
  // From 1 MiB of growth, not berthd's 2: the shim's whole heap is 6-7 MiB, and with 20 pods or
  // after a 40-pod churn it had 2.2 and 1.4 MiB more committed than after a GC, which took back
  // 1.6-1.7 MiB of RSS (inspector attached to the shim, memory-idle.bench.js 10 20 40). Against
  // 2 MiB, 2 runs each (load 4.3-8.3): the shim's RSS after the churn 50.3, 50.2 -> 49.7, 49.8
  // MiB; the shim side with 20 pods 82.9, 82.8 -> 82.1, 82.6.
  startIdleTrim({ mallocTrim, minGrowthBytes: 1024 * 1024 });
  // The parent (`start`) and any client may go away; nothing here depends on them.
  process.on("SIGHUP", () => {});
}
