// gVisor (runsc) quirks of berth's shim. runsc runs every container of a pod in one
// sandbox: the pod's sandbox container is the sandbox's root, and a container whose
// config.json says io.kubernetes.cri.container-type=container (with io.kubernetes.cri.sandbox-id)
// becomes a sub-container of that sandbox (runsc/specutils/cri.go). A sub-container differs
// from a runc container in two ways that matter here, as gVisor's own shim handles them
// (pkg/shim/proc/init.go):
//   - its stdio is taken from `runsc start`, not `runsc create` (create's stdio goes nowhere);
//   - it has no host process of its own: the pid runsc reports is the sandbox's, so its exit
//     status comes from `runsc wait ID`, not from reaping a child.
// So the monitor of a sub-container runs, at Start, a small /bin/sh wrapper that runs
// `runsc start` with the container's stdio, then leaves a waiter child (whose pid goes in the
// pid file) that runs `runsc wait` and exits with the container's exit status. The monitor
// reaps that waiter as it reaps a runc container's init, so exits, stdio and re-adoption after
// a shim restart work unchanged.
import { readFile } from "node:fs/promises";
import { join } from "node:path";

import { Metrics } from "../gen/cgroups/stats/v1/metrics.js";
import type { OciRuntime } from "./runtime.js";

const CONTAINER_TYPE_ANNOTATIONS = ["io.kubernetes.cri.container-type", "io.kubernetes.cri-o.ContainerType"];

/** Whether a bundle's spec asks runsc for a sub-container of an existing sandbox. */
export async function isSubcontainerBundle(bundle: string): Promise<boolean> {
  try {
    const spec = JSON.parse(await readFile(join(bundle, "config.json"), "utf8")) as {
      annotations?: Record<string, string>;
    };
    for (const key of CONTAINER_TYPE_ANNOTATIONS) {
      const t = spec.annotations?.[key];
      if (t !== undefined) return t === "container";
    }
  } catch {
    // unreadable: runsc will say so at create
  }
  return false;
}

// $1 container id, $2 pid file, then the runtime command with its global flags.
// `runsc wait` prints {"id":..,"exitStatus":N} (128+signal for a signalled process).
const START_SCRIPT = `id=$1; pidfile=$2; shift 2
"$@" start "$id" || exit $?
(
  exec </dev/null >/dev/null 2>&1
  out=$("$@" wait "$id")
  s=\${out##*'"exitStatus":'}
  s=\${s%%[!0-9]*}
  exit "\${s:-255}"
) &
echo $! >"$pidfile"
`;

/** argv for a monitor: starts a sub-container with the monitor's stdio and leaves its waiter. */
export function subcontainerStartArgv(runtime: OciRuntime, id: string, pidFile: string, logFile: string): string[] {
  return [
    "/bin/sh",
    "-c",
    START_SCRIPT,
    "berth-runsc-start",
    id,
    pidFile,
    runtime.command,
    ...runtime.globalArgs(logFile),
  ];
}

/** The stats part of `runsc events --stats` (runsc/container Event, cgroup-like units). */
interface RunscStats {
  cpu?: { usage?: { kernel?: number; user?: number; total?: number; percpu?: number[] } };
  memory?: {
    cache?: number;
    usage?: { limit?: number; usage?: number; max?: number; failcnt?: number };
    raw?: Record<string, number>;
  };
  pids?: { current?: number; limit?: number };
}

const big = (n: number | undefined): bigint => (typeof n === "number" && n > 0 ? BigInt(Math.floor(n)) : 0n);

/**
 * `runsc events --stats` output as the cgroups v1 Metrics a runc task reports: the processes
 * of a gVisor container run inside the sandbox, so only the sentry knows their usage.
 */
export function runscStatsToMetrics(id: string, json: string): Metrics {
  const ev = JSON.parse(json) as { data?: RunscStats };
  const s = ev.data ?? {};
  const raw = s.memory?.raw ?? {};
  const usage = big(s.memory?.usage?.usage);
  const cache = big(s.memory?.cache ?? raw.cache);
  return Metrics.fromPartial({
    pids: { current: big(s.pids?.current), limit: big(s.pids?.limit) },
    cpu: {
      usage: {
        total: big(s.cpu?.usage?.total),
        kernel: big(s.cpu?.usage?.kernel),
        user: big(s.cpu?.usage?.user),
        perCpu: (s.cpu?.usage?.percpu ?? []).map(big),
      },
    },
    memory: {
      cache,
      rss: big(raw.rss),
      totalCache: cache,
      totalRss: big(raw.rss),
      totalInactiveFile: big(raw.inactive_file ?? raw.total_inactive_file),
      usage: {
        usage,
        max: big(s.memory?.usage?.max),
        limit: big(s.memory?.usage?.limit),
        failcnt: big(s.memory?.usage?.failcnt),
      },
    },
  });
}

/** Metrics of a gVisor container, from the sandbox. */
export async function runscMetrics(runtime: OciRuntime, id: string): Promise<Metrics> {
  const out = await runtime.run(["events", "--stats", id]);
  return runscStatsToMetrics(id, out.toString());
}
