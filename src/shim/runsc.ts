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
// a shim restart work unchanged. A sub-container with a terminal gets its pty at `runsc create`,
// so its monitor runs from Create (TERMINAL_SCRIPT below). An exec's host process is only
// runsc's waiter for the real process in the sandbox: it is signalled by its pid in there.
import { closeSync, constants as fsc, openSync, writeSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";

import { Metrics } from "../gen/cgroups/stats/v1/metrics.js";
import { NotFoundError } from "../util/errors.js";
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

// Runs `runsc start` and leaves the waiter; $id, $pidfile and "$@" (the runtime command with its
// global flags) are set by the script it ends. `runsc wait` prints {"id":..,"exitStatus":N}
// (128+signal for a signalled process).
const START_AND_WAIT = `"$@" start "$id" || exit $?
(
  exec </dev/null >/dev/null 2>&1
  out=$("$@" wait "$id")
  s=\${out##*'"exitStatus":'}
  s=\${s%%[!0-9]*}
  exit "\${s:-255}"
) &
echo $! >"$pidfile"
`;

// $1 container id, $2 pid file, then the runtime command with its global flags.
const START_SCRIPT = `id=$1; pidfile=$2; shift 2
${START_AND_WAIT}`;

// A sub-container with a terminal: runsc makes the pty at `create` and sends its master to
// --console-socket then (runsc/container: CreateContainer(id, tty)); `start` only runs the
// process on it. So the monitor, which receives the master, runs from Create: this wrapper
// creates the container, opens the gate fifo, tells the shim it is created by renaming the
// sandbox pid file into place, and waits at the gate for the shim's Start ("start") or
// Delete (anything else) before starting the container as START_SCRIPT does.
// $1 id, $2 pid file, $3 bundle, $4 console socket, $5 sandbox pid file, $6 gate fifo.
const TERMINAL_SCRIPT = `id=$1; pidfile=$2; bundle=$3; sock=$4; created=$5; gate=$6; shift 6
rm -f "$gate" "$created.tmp"
mkfifo -m 600 "$gate" || exit 125
"$@" create --bundle "$bundle" --console-socket "$sock" --pid-file "$created.tmp" "$id" || exit $?
exec 3<>"$gate"
mv "$created.tmp" "$created"
read -r word <&3
exec 3<&-
[ "$word" = start ] || exit 125
${START_AND_WAIT}`;

/** Files of a terminal sub-container's wrapper, in its init's state dir. */
export function terminalFiles(stateDir: string): { consoleSocket: string; created: string; gate: string } {
  return {
    consoleSocket: join(stateDir, "console.sock"),
    created: join(stateDir, "sandbox.pid"),
    gate: join(stateDir, "start-gate"),
  };
}

/** argv for the monitor of a sub-container with a terminal: create now, start at the gate. */
export function subcontainerTerminalArgv(
  runtime: OciRuntime,
  id: string,
  bundle: string,
  stateDir: string,
  logFile: string,
): string[] {
  const f = terminalFiles(stateDir);
  return [
    "/bin/sh",
    "-c",
    TERMINAL_SCRIPT,
    "berth-runsc-tty",
    id,
    join(stateDir, "pid"),
    bundle,
    f.consoleSocket,
    f.created,
    f.gate,
    runtime.command,
    ...runtime.globalArgs(logFile),
  ];
}

/**
 * Waits until the terminal wrapper has created the container; resolves with the sandbox pid
 * runsc wrote. `failed` settles (rejects) when the wrapper ended instead.
 */
export async function waitTerminalCreated(
  stateDir: string,
  failed: Promise<unknown>,
  timeoutMs = 60_000,
): Promise<number> {
  const { created } = terminalFiles(stateDir);
  let done = false;
  let failure: unknown;
  failed.then(
    () => (done = true),
    (err: unknown) => {
      done = true;
      failure = err;
    },
  );
  for (const end = Date.now() + timeoutMs; Date.now() < end;) {
    const text = await readFile(created, "utf8").catch(() => "");
    const pid = Number(text.trim());
    if (pid > 0) return pid;
    if (done) throw failure instanceof Error ? failure : new Error("the runsc create wrapper ended");
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`runsc create did not finish within ${timeoutMs} ms`);
}

/**
 * Opens the gate of a terminal sub-container's wrapper with `word` ("start" runs the container;
 * anything else ends the wrapper). False when no wrapper waits there.
 */
export function openGate(stateDir: string, word: string): boolean {
  let fd: number;
  try {
    // Non-blocking: ENXIO when the wrapper (the only reader) is gone.
    fd = openSync(terminalFiles(stateDir).gate, fsc.O_WRONLY | fsc.O_NONBLOCK);
  } catch {
    return false;
  }
  try {
    writeSync(fd, `${word}\n`);
    return true;
  } catch {
    return false;
  } finally {
    closeSync(fd);
  }
}

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

/**
 * Where `runsc exec --internal-pid-file` writes an exec's pid inside the sandbox (in the exec's
 * state dir, so a restarted shim still finds it).
 */
export function execInternalPidFile(stateDir: string): string {
  return join(stateDir, "sandbox-pid");
}

/**
 * Signals a runsc exec. Its host pid is a `runsc exec` process that only waits for the real
 * process inside the sandbox: SIGKILL of it would leave the command running in there. So, as
 * gVisor's own shim does (pkg/shim/proc/exec.go), the signal goes through
 * `runsc kill --pid <pid in the sandbox>`; the host process then ends with the process's status.
 */
export async function killRunscExec(
  runtime: OciRuntime,
  id: string,
  stateDir: string,
  hostPid: number,
  signal: number,
): Promise<void> {
  const inner = Number((await readFile(execInternalPidFile(stateDir), "utf8").catch(() => "")).trim());
  if (!(inner > 0)) {
    // No pid in the sandbox is known (an exec started by an older shim): signal what we have.
    signalHost(hostPid, signal, id);
    return;
  }
  try {
    await runtime.killPid(id, inner, signal);
  } catch (err) {
    if (!hostAlive(hostPid) || /no such process|not found|does not exist/i.test((err as Error).message)) {
      throw new NotFoundError(`exec process ${inner} of ${id} already finished`);
    }
    throw err;
  }
}

function signalHost(pid: number, signal: number, id: string): void {
  try {
    process.kill(pid, signal);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ESRCH")
      throw new NotFoundError(`exec process of ${id} already finished`);
    throw err;
  }
}

function hostAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
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
