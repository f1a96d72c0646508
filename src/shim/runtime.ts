// The OCI runtime command line (runc, crun, runsc): builds argv for the monitor to run
// (create, exec, restore) and runs the short commands itself (start, kill, delete, ...).
// Errors come back from the runtime's JSON log (--log, --log-format json), as containerd's
// runc shim reads them, so a caller sees runc's own message.
import { execFile, spawn } from "node:child_process";
import { mkdir, readFile, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";

import { trackChild } from "./reaper.js";
import { traceRuntime } from "./trace.js";
import { FailedPreconditionError, InternalError, NotFoundError } from "../util/errors.js";

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

  /** argv of `create`, for the monitor to run (the container process becomes its child). */
  createArgv(
    id: string,
    bundle: string,
    pidFile: string,
    consoleSocket: string | undefined,
    logFile: string,
  ): string[] {
    const a = [this.command, ...this.globalArgs(logFile), "create", "--bundle", bundle, "--pid-file", pidFile];
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
      this.command,
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
      const status = await new Promise<number>((resolve) => {
        const child = trackChild(spawn(this.command, argv, { stdio: "ignore" }));
        child.once("error", () => resolve(127));
        child.once("exit", (code) => resolve(code ?? 255));
      });
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
    const out = await this.run(["ps", "--format", "json", id]);
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
    return new Promise((resolve, reject) => {
      const child = trackChild(
        execFile(this.command, argv, { encoding: "buffer", maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
          void (async () => {
            const logged = err ? await lastRuntimeError(logFile) : "";
            await rm(logFile, { force: true });
            if (!err) return resolve(stdout);
            const msg = logged || stderr.toString().trim() || err.message;
            reject(runtimeError(`${this.kind} ${args[0]}`, msg));
          })();
        }),
      );
      if (stdin) child.stdin?.end(stdin);
      else child.stdin?.end();
    });
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
  if (/container does not exist|container .* not found|container not found/i.test(msg)) return new NotFoundError(text);
  if (
    /not running|is paused|not paused|container not running|cannot .* in .* state|is not running|already stopped|is stopped/i.test(
      msg,
    )
  ) {
    return new FailedPreconditionError(text);
  }
  return new RuntimeError(text);
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

export function runtimeLogPath(stateDir: string): string {
  return join(stateDir, "runtime-log.json");
}
