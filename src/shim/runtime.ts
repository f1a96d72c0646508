// The OCI runtime command line (runc, crun, runsc): builds argv for the monitor to run
// (create, exec, restore) and runs the short commands itself (start, kill, delete, ...).
// Errors come back from the runtime's JSON log (--log, --log-format json), as containerd's
// runc shim reads them, so a caller sees runc's own message.
//
// The commands start through sys/spawn.ts (posix_spawn), not child_process: a fork of the
// shim would copy its page tables for every runc run, several per pod.
import { accessSync, constants as fsc, statSync } from "node:fs";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";

import { MaxBufferError, runProgram, spawnChild } from "../sys/spawn.js";
import { traceRuntime } from "./trace.js";
import { Options } from "../gen/containerd/runc/options/oci.js";
import type { Any } from "../gen/google/protobuf/any.js";
import { FailedPreconditionError, InternalError, InvalidArgumentError, NotFoundError } from "../util/errors.js";

export interface RuntimeConfig {
  /** Binary name or path; berth extension: extra global flags may follow, space separated. */
  binary: string;
  /** The runtime's state root (--root). */
  root: string;
  systemdCgroup: boolean;
  noPivotRoot: boolean;
  noNewKeyring: boolean;
  criuPath: string;
}

export class RuntimeError extends InternalError {}

export interface CheckpointArgs {
  imagePath: string;
  workPath: string;
  exit: boolean;
  openTcp: boolean;
  externalUnixSockets: boolean;
  terminal: boolean;
  fileLocks: boolean;
  emptyNamespaces: string[];
  cgroupsMode: string;
  parentPath: string;
}

export class OciRuntime {
  readonly command: string;
  readonly extraArgs: string[];

  constructor(
    readonly config: RuntimeConfig,
    /** Where the runtime writes its JSON log; read back for error messages. */
    readonly logFile: string,
  ) {
    const parts = config.binary.trim().split(/\s+/).filter(Boolean);
    this.command = parts[0] || "runc";
    this.extraArgs = parts.slice(1);
  }

  /** "runc", "runsc", "crun": decides quirks. */
  get kind(): string {
    return basename(this.command);
  }

  globalArgs(logFile = this.logFile): string[] {
    const a = ["--root", this.config.root, "--log", logFile, "--log-format", "json"];
    if (this.config.systemdCgroup) a.push("--systemd-cgroup");
    return [...a, ...this.extraArgs];
  }

  /**
   * argv of `create`, or with `andStart` of `run --detach` (created and started by one runtime
   * process, where create then start take two), for the monitor to run (the container process
   * becomes its child). The binary is the absolute path when it can be found, so that the
   * monitor's exec does not search PATH.
   */
  createArgv(
    id: string,
    bundle: string,
    pidFile: string,
    consoleSocket: string | undefined,
    logFile: string,
    andStart = false,
  ): string[] {
    const verb = andStart ? ["run", "--detach"] : ["create"];
    const a = [
      resolveBinary(this.command),
      ...this.globalArgs(logFile),
      ...verb,
      "--bundle",
      bundle,
      "--pid-file",
      pidFile,
    ];
    if (consoleSocket) a.push("--console-socket", consoleSocket);
    if (this.config.noPivotRoot) a.push("--no-pivot");
    if (this.config.noNewKeyring) a.push("--no-new-keyring");
    a.push(id);
    return a;
  }

  /**
   * argv of `exec --detach`, for the monitor to run. `internalPidFile` (runsc only) receives the
   * process's pid inside the sandbox, which `kill --pid` needs (the --pid-file pid is runsc's
   * host-side process, whose death does not end the process in the sandbox).
   */
  execArgv(
    id: string,
    processJson: string,
    pidFile: string,
    consoleSocket: string | undefined,
    logFile: string,
    internalPidFile?: string,
  ): string[] {
    const a = [
      resolveBinary(this.command),
      ...this.globalArgs(logFile),
      "exec",
      "--detach",
      "--process",
      processJson,
      "--pid-file",
      pidFile,
    ];
    if (internalPidFile) a.push("--internal-pid-file", internalPidFile);
    if (consoleSocket) a.push("--console-socket", consoleSocket);
    a.push(id);
    return a;
  }

  /** argv of `restore --detach` from a checkpoint image, for the monitor to run. */
  restoreArgv(
    id: string,
    bundle: string,
    imagePath: string,
    workPath: string,
    pidFile: string,
    consoleSocket: string | undefined,
    logFile: string,
  ): string[] {
    const a = [
      this.command,
      ...this.globalArgs(logFile),
      "restore",
      "--detach",
      "--bundle",
      bundle,
      "--image-path",
      imagePath,
    ];
    if (workPath) a.push("--work-path", workPath);
    a.push("--pid-file", pidFile);
    if (consoleSocket) a.push("--console-socket", consoleSocket);
    if (this.config.noPivotRoot) a.push("--no-pivot");
    a.push(id);
    return a;
  }

  /**
   * `create` run to completion with no stdio at all: a runsc sub-container takes its stdio at
   * `start`, and a process runsc leaves behind must not hold a pipe of ours open.
   */
  async createDetached(id: string, bundle: string, pidFile: string): Promise<void> {
    await mkdir(dirname(this.logFile), { recursive: true, mode: 0o700 });
    const argv = [...this.globalArgs(), "create", "--bundle", bundle, "--pid-file", pidFile];
    if (this.config.noPivotRoot) argv.push("--no-pivot");
    argv.push(id);
    await traceRuntime(`${this.kind} create`, { "runtime.args": argv.join(" ") }, async () => {
      let status: number;
      try {
        const child = spawnChild(this.command, argv, { stdio: ["ignore", "ignore", "ignore"] });
        status = (await child.exited).code ?? 255;
      } catch {
        status = 127; // could not be started
      }
      if (status !== 0) {
        const msg = (await lastRuntimeError(this.logFile)) || `exit status ${status}`;
        throw runtimeError(`${this.kind} create`, msg);
      }
    });
  }

  async start(id: string): Promise<void> {
    await this.run(["start", id]);
  }

  async kill(id: string, signal: number, all: boolean): Promise<void> {
    await this.run(["kill", ...(all ? ["--all"] : []), id, String(signal)]);
  }

  /** runsc: signals one process of a container by its pid in the sandbox's root pid namespace. */
  async killPid(id: string, pid: number, signal: number): Promise<void> {
    await this.run(["kill", "--pid", String(pid), id, String(signal)]);
  }

  async delete(id: string, force: boolean): Promise<void> {
    try {
      await this.run(["delete", ...(force ? ["--force"] : []), id]);
    } catch (err) {
      if (err instanceof NotFoundError) return;
      throw err;
    }
  }

  async pause(id: string): Promise<void> {
    await this.run(["pause", id]);
  }

  async resume(id: string): Promise<void> {
    await this.run(["resume", id]);
  }

  /** `update --resources -` with OCI LinuxResources JSON on stdin. */
  async update(id: string, resourcesJson: Buffer): Promise<void> {
    if (this.kind === "crun") {
      // crun reads `-` by opening /dev/stdin, which fails (ENXIO) on a socket, the stdin
      // child_process gives (BERTH_SPAWN=child_process; sys/spawn.ts gives a pipe): hand it a file.
      const file = `${this.logFile}.resources.${Math.random().toString(36).slice(2, 8)}.json`;
      await mkdir(dirname(file), { recursive: true, mode: 0o700 });
      await writeFile(file, resourcesJson, { mode: 0o600 });
      try {
        await this.run(["update", "--resources", file, id]);
      } finally {
        await rm(file, { force: true });
      }
      return;
    }
    await this.run(["update", "--resources", "-", id], resourcesJson);
  }

  async checkpoint(id: string, c: CheckpointArgs): Promise<void> {
    const a = ["checkpoint", "--image-path", c.imagePath, "--work-path", c.workPath];
    if (this.config.criuPath) a.push("--criu", this.config.criuPath);
    if (!c.exit) a.push("--leave-running");
    if (c.openTcp) a.push("--tcp-established");
    if (c.externalUnixSockets) a.push("--ext-unix-sk");
    if (c.terminal) a.push("--shell-job");
    if (c.fileLocks) a.push("--file-locks");
    for (const ns of c.emptyNamespaces) a.push("--empty-ns", ns);
    if (c.cgroupsMode) a.push("--manage-cgroups-mode", c.cgroupsMode);
    if (c.parentPath) a.push("--parent-path", c.parentPath);
    a.push(id);
    await this.run(a);
  }

  /** Host pids of every process in the container. */
  async ps(id: string): Promise<number[]> {
    let out: Buffer;
    try {
      out = await this.run(["ps", "--format", "json", id]);
    } catch (err) {
      // crun 1.8 dies (SIGSEGV) on `ps` of a stopped container, whose cgroup is gone: a stopped
      // container has no processes, which is what runc answers.
      if (this.kind !== "crun" || err instanceof NotFoundError) throw err;
      const st = await this.state(id).catch(() => undefined);
      if (st?.status === "stopped") return [];
      throw err;
    }
    const pids = JSON.parse(out.toString() || "[]") as number[] | null;
    return pids ?? [];
  }

  async state(id: string): Promise<{ status: string; pid: number }> {
    const out = await this.run(["state", id]);
    return JSON.parse(out.toString()) as { status: string; pid: number };
  }

  /** Runs one command; a failure becomes a typed error with the runtime's own message. */
  run(args: string[], stdin?: Buffer): Promise<Buffer> {
    // inside a call berthd traces, the command becomes a span of that trace ("runc start")
    return traceRuntime(`${this.kind} ${args[0] ?? ""}`, { "runtime.args": args.join(" ") }, () =>
      this.runCommand(args, stdin),
    );
  }

  private async runCommand(args: string[], stdin?: Buffer): Promise<Buffer> {
    // the state dir may be gone (containerd's `delete` cleaned it): the runtime needs the log's dir
    await mkdir(dirname(this.logFile), { recursive: true, mode: 0o700 });
    const logFile = `${this.logFile}.${process.pid}.${Math.random().toString(36).slice(2, 8)}`;
    const argv = [...this.globalArgs(logFile), ...args];
    let failure: string | undefined;
    let stdout: Buffer = Buffer.alloc(0);
    let stderr: Buffer = Buffer.alloc(0);
    try {
      const r = await runProgram(resolveBinary(this.command), argv, { input: stdin, maxBuffer: 16 << 20 });
      ({ stdout, stderr } = r);
      if (r.signal) failure = `killed by ${r.signal}`;
      else if (r.code !== 0) failure = `exit status ${r.code}`;
    } catch (err) {
      // could not start (ENOENT...), or its output outgrew maxBuffer and it was killed
      failure = err instanceof MaxBufferError ? `${err.message} (killed)` : (err as Error).message;
      if (err instanceof MaxBufferError) stderr = err.result.stderr;
    }
    const logged = failure !== undefined ? await lastRuntimeError(logFile) : "";
    await rm(logFile, { force: true });
    if (failure === undefined) return stdout;
    const msg = logged || stderr.toString().trim() || failure;
    if (namesMissingState(msg, this.config.root)) {
      // crun's way of saying the container does not exist: its state dir is not there
      throw new NotFoundError(`${this.kind} ${args[0]}: container does not exist (${msg})`);
    }
    throw runtimeError(`${this.kind} ${args[0]}`, msg);
  }
}

/** Maps a runtime's message to the typed error a caller can act on. */
export function runtimeError(what: string, msg: string): Error {
  let text = `${what}: ${msg}`;
  if (/cannot run with network enabled in root network namespace/.test(msg)) {
    // Older runsc (Debian 12's 20221219) tells the host's netns by the presence of
    // /proc/sys/net/core/rmem_default, which newer kernels (6.x) show in every netns, so the
    // pod's CNI netns looks like the host's.
    text +=
      " (this runsc mistakes the pod's network namespace for the host's on this kernel: configure the handler with" +
      ' binary_name = "runsc --network=host", or install a newer gVisor release)';
  }
  if (/cgroups in hybrid mode not supported/.test(msg)) {
    // crun (1.x) checks this before any cgroup manager, so no crun flag or spec change avoids it.
    return new FailedPreconditionError(
      `${text} (crun refuses a hybrid cgroup v1/v2 layout whose v2 hierarchy has controllers, whatever its` +
        " flags: drop those controllers from cgroup v2, boot with one cgroup version, or run crun through a" +
        " wrapper that hides /sys/fs/cgroup/unified, see berth's README, runtime handlers)",
    );
  }
  if (/^unknown command (checkpoint|restore)$/.test(msg.trim())) {
    return new FailedPreconditionError(`${text} (this crun was built without CRIU support)`);
  }
  if (/container does not exist|container .* not found|container not found/i.test(msg)) return new NotFoundError(text);
  if (
    /not running|is paused|not paused|container not running|cannot .* in .* state|is not running|already stopped|is stopped|kill container: No such process/i.test(
      msg,
    )
  ) {
    return new FailedPreconditionError(text);
  }
  return new RuntimeError(text);
}

/**
 * Whether a runtime's message says a container's own state under `root` is missing: crun reports
 * an unknown container as "cannot open directory '<root>/<id>': No such file or directory" or
 * "error opening file `<root>/<id>/status`: ...", never as "container does not exist".
 */
export function namesMissingState(msg: string, root: string): boolean {
  if (!root || !/No such file or directory/.test(msg)) return false;
  const dir = root.replace(/\/+$/, "").replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  return new RegExp(`['\`]${dir}/[^/'\`]+(/status)?['\`]: No such file or directory`).test(msg);
}

/** The last error line of a runtime's JSON log ({"level":"error","msg":...}). */
export async function lastRuntimeError(logFile: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(logFile, "utf8");
  } catch {
    return "";
  }
  let last = "";
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    try {
      const entry = JSON.parse(line) as { level?: string; msg?: string };
      if (entry.level === "error" || entry.level === "fatal") last = entry.msg ?? last;
    } catch {
      last = line;
    }
  }
  return last;
}

const resolved = new Map<string, string>();

/**
 * The absolute path of a runtime binary named without a slash, found on PATH once per name (a
 * name that is not found stays as it is: the exec then fails and reports it). An exec through
 * PATH tries every directory before the runtime's, on every create and exec.
 */
export function resolveBinary(command: string): string {
  if (command.includes("/")) return command;
  const known = resolved.get(command);
  if (known) return known;
  for (const dir of (process.env.PATH || "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin").split(":")) {
    if (!dir.startsWith("/")) continue;
    const p = join(dir, command);
    try {
      accessSync(p, fsc.X_OK);
      if (!statSync(p).isFile()) continue;
    } catch {
      continue;
    }
    resolved.set(command, p);
    return p;
  }
  return command;
}

export function runtimeLogPath(stateDir: string): string {
  return join(stateDir, "runtime-log.json");
}

const OPTIONS_TYPES = new Set(["containerd.runc.v1.Options", "type.googleapis.com/containerd.runc.v1.Options"]);

/**
 * The runtime a task is created with, from containerd's runc Options (CreateTaskRequest.options):
 * the binary (default runc) and its state root (default <rootBase>/<runtime>/<namespace>).
 */
export function runtimeConfigFrom(options: Any | undefined, namespace: string, rootBase?: string): RuntimeConfig {
  let o: Options = Options.fromPartial({});
  if (options && options.value.length > 0) {
    if (!OPTIONS_TYPES.has(options.typeUrl)) {
      throw new InvalidArgumentError(
        `unsupported create options type ${options.typeUrl}: want containerd.runc.v1.Options`,
      );
    }
    o = Options.decode(options.value);
  }
  const binary = o.binaryName || "runc";
  const kind = binary.trim().split(/\s+/)[0]!.split("/").pop()!;
  const base = rootBase ?? process.env.BERTH_SHIM_RUNTIME_ROOT ?? "/run/berth";
  return {
    binary,
    root: o.root || join(base, kind, namespace),
    systemdCgroup: o.systemdCgroup,
    noPivotRoot: o.noPivotRoot,
    noNewKeyring: o.noNewKeyring,
    criuPath: o.criuPath,
  };
}
