// Starting programs without forking berthd or the shim (native/sys/spawn.c: posix_spawn,
// i.e. clone(CLONE_VM|CLONE_VFORK), and a pidfd on the event loop for the exit).
//
// child_process.spawn forks, copying the page tables of the whole Node process: 0.7-2 ms of
// blocked event loop per program at 50-150 MiB RSS, and the OCI runtime, CNI plugins and
// iptables run several times per pod. spawnChild gives callers the shape they had from
// ChildProcess: pid, stdin/stdout/stderr (net.Socket on pipes the addon made), extra slots
// (socketpairs), kill, 'exit' and 'close' events, ref/unref; `exited` is a promise of the exit.
//
// Differences that matter: a program that cannot be started (ENOENT, EACCES, a bad cwd) throws
// a SysError synchronously instead of emitting 'error' later; every fd of ours is closed in
// the child (child_process only closes close-on-exec ones); and "pipe" slots are pipes, not the
// socketpairs child_process makes (so a child can open /dev/stdin).
//
// What still blocks the event loop: with CLONE_VFORK the calling thread waits until the child
// has exec'd (0.2-0.5 ms here, more when the child waits for a CPU), plus the JS around it.
//
// Reaping: only the pidfd reaps a native child (waitid P_PIDFD), and the shim's subreaper
// (src/shim/reaper.ts) skips every pid in liveSpawnedChildren(), so neither steals the other's
// exit status.
//
// BERTH_SPAWN=child_process (read once, at first use) makes every spawnChild go through
// child_process instead, with the same shape: for measuring one against the other, and as the
// fallback when the kernel has no pidfd_open (Linux < 5.3), without which an exit could only be
// noticed through SIGCHLD and waitpid, which libuv owns.
import { spawn as cpSpawn, type ChildProcess } from "node:child_process";
import { EventEmitter } from "node:events";
import { accessSync, constants as fsConstants, statSync } from "node:fs";
import net from "node:net";
import { constants as osConstants } from "node:os";
import { delimiter, join } from "node:path";

import { native, SysError, type Binding } from "./index.js";

/** One slot of the child's stdio: a new pipe, a new socketpair, /dev/null, or an fd of ours. */
export type StdioSpec = "pipe" | "socket" | "ignore" | number;

export interface SpawnOptions {
  /** The whole environment (default: this process's, as it is now). */
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Slots 0..n-1 of the child (default ["pipe", "pipe", "pipe"]); at most 16. */
  stdio?: StdioSpec[];
  /** Its own session and process group (setsid), like child_process's `detached`. */
  detached?: boolean;
}

export interface ExitStatus {
  /** exit code, or null when a signal ended it */
  code: number | null;
  signal: NodeJS.Signals | null;
}

type ChildEvents = {
  exit: [number | null, NodeJS.Signals | null];
  close: [number | null, NodeJS.Signals | null];
};

const STDIO_KIND = { ignore: -1, pipe: -2, socket: -3 } as const;

const liveSpawned = new Set<number>();

/** Pids of spawnChild's children not yet reaped (the shim's reaper leaves them alone). */
export function liveSpawnedChildren(): ReadonlySet<number> {
  return liveSpawned;
}

function signalName(n: number): NodeJS.Signals | null {
  for (const [name, num] of Object.entries(osConstants.signals)) if (num === n) return name as NodeJS.Signals;
  return null;
}

/** A running (or finished) program started by spawnChild. */
export class Child extends EventEmitter<ChildEvents> {
  readonly stdio: (net.Socket | null)[];
  exitCode: number | null = null;
  signalCode: NodeJS.Signals | null = null;
  /** Resolves when the program has exited and been reaped (stdio may still be open). */
  readonly exited: Promise<ExitStatus>;
  private resolveExit!: (s: ExitStatus) => void;
  private done = false;
  private openStreams = 0;
  private refHandle: ((on: boolean) => void) | undefined;

  constructor(
    readonly pid: number,
    stdio: (net.Socket | null)[],
  ) {
    super();
    this.stdio = stdio;
    this.exited = new Promise((resolve) => (this.resolveExit = resolve));
    // Like ChildProcess, 'close' waits for the output streams too.
    for (const s of stdio.slice(1)) {
      if (!s || !s.readable) continue;
      this.openStreams++;
      s.once("close", () => this.streamClosed());
    }
  }

  get stdin(): net.Socket | null {
    return this.stdio[0] ?? null;
  }
  get stdout(): net.Socket | null {
    return this.stdio[1] ?? null;
  }
  get stderr(): net.Socket | null {
    return this.stdio[2] ?? null;
  }
  /** Signals the program; false when it has already been reaped (its pid may be someone else's). */
  kill(signal: NodeJS.Signals | number = "SIGTERM"): boolean {
    if (this.done) return false;
    process.kill(this.pid, signal);
    return true;
  }

  /**
   * Signals the program's whole process group (it must be `detached`), also after the program
   * itself is gone: members left behind keep the group, and its id, from being reused. False
   * when there was nobody to signal.
   */
  killGroup(signal: NodeJS.Signals | number = "SIGKILL"): boolean {
    try {
      process.kill(-this.pid, signal);
      return true;
    } catch {
      return this.kill(signal);
    }
  }

  /** Whether the wait for the exit keeps Node running (it does by default). */
  ref(): void {
    this.refHandle?.(true);
  }
  unref(): void {
    this.refHandle?.(false);
  }

  /** @internal */
  setRef(fn: (on: boolean) => void): void {
    this.refHandle = fn;
  }

  /** @internal */
  onExit(code: number | null, signal: NodeJS.Signals | null): void {
    if (this.done) return;
    this.done = true;
    this.exitCode = code;
    this.signalCode = signal;
    this.resolveExit({ code, signal });
    this.emit("exit", code, signal);
    this.maybeClose();
  }

  private streamClosed(): void {
    this.openStreams--;
    this.maybeClose();
  }

  private maybeClose(): void {
    if (this.done && this.openStreams === 0) {
      this.openStreams = -1;
      this.emit("close", this.exitCode, this.signalCode);
    }
  }
}

function envArray(env: NodeJS.ProcessEnv): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(env)) if (v !== undefined) out.push(`${k}=${v}`);
  return out;
}

function socketFor(fd: number, slot: number, kind: StdioSpec): net.Socket {
  if (kind === "socket") return new net.Socket({ fd, readable: true, writable: true });
  // slot 0 is the child's input: we write it; the others we read
  return slot === 0
    ? new net.Socket({ fd, readable: false, writable: true })
    : new net.Socket({ fd, readable: true, writable: false });
}

let mode: "native" | "child_process" | undefined;

function spawnMode(): "native" | "child_process" {
  if (mode) return mode;
  mode = "native";
  if (process.env.BERTH_SPAWN === "child_process") mode = "child_process";
  else {
    try {
      native().pidfdOpen(process.pid);
    } catch (err) {
      if ((err as SysError).code !== "ENOSYS") throw err;
      mode = "child_process";
    }
  }
  return mode;
}

/** Which implementation spawnChild uses in this process. */
export function spawnImplementation(): "native" | "child_process" {
  return spawnMode();
}

/**
 * Starts `file` (searched on the PATH of `env` when it has no slash) with `args`. Throws a
 * SysError (code ENOENT, EACCES, ...) when it cannot be started.
 */
export function spawnChild(file: string, args: string[], opts: SpawnOptions = {}): Child {
  const stdio = opts.stdio ?? ["pipe", "pipe", "pipe"];
  if (spawnMode() === "child_process") return spawnWithChildProcess(file, args, opts, stdio);
  const env = opts.env ?? process.env;
  const kinds = stdio.map((s) => (typeof s === "number" ? s : STDIO_KIND[s]));
  // The exit cannot be reported before spawn returns (the pidfd is polled on this thread), so
  // the callback finds the Child made below.
  const made: { child?: Child } = {};
  let r: ReturnType<Binding["spawn"]>;
  try {
    r = native().spawn(
      file,
      [file, ...args],
      envArray(env),
      opts.cwd ?? null,
      kinds,
      opts.detached ?? false,
      (code: number, signal: number, errno: number) => {
        liveSpawned.delete(r.pid);
        if (errno !== 0) {
          // Someone reaped our child (a waitpid(-1) somewhere): the status is lost.
          process.emitWarning(`berth spawn: the exit status of ${file} (pid ${r.pid}) was taken by another waiter`);
        }
        made.child!.onExit(code >= 0 ? code : null, signal > 0 ? signalName(signal) : null);
      },
    );
  } catch (err) {
    throw blameCwd(err, opts.cwd);
  }
  liveSpawned.add(r.pid);
  const sockets = r.fds.map((fd, i) => (fd >= 0 ? socketFor(fd, i, stdio[i]!) : null));
  const child = new Child(r.pid, sockets);
  made.child = child;
  const handle = r.handle;
  child.setRef((on) => native().spawnRef(handle, on));
  return child;
}

/** posix_spawn says ENOENT for a missing cwd too: name the cwd when that is what is missing. */
function blameCwd(err: unknown, cwd: string | undefined): unknown {
  if (!(err instanceof SysError) || err.code !== "ENOENT" || cwd === undefined) return err;
  try {
    if (statSync(cwd).isDirectory()) return err;
  } catch {
    // missing: blame it
  }
  return new SysError("chdir", "ENOENT", 2, cwd);
}

/** The executable child_process would run, checked now so a failure throws like the native path. */
function resolveExecutable(file: string, env: NodeJS.ProcessEnv): string {
  const dirs = file.includes("/") ? [""] : (env.PATH ?? "/usr/local/bin:/usr/bin:/bin").split(delimiter);
  let code = "ENOENT";
  for (const d of dirs) {
    const p = d === "" && file.includes("/") ? file : join(d || ".", file);
    try {
      if (!statSync(p).isFile()) continue;
      accessSync(p, fsConstants.X_OK);
      return p;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "EACCES") code = "EACCES";
    }
  }
  throw new SysError("posix_spawn", code, code === "EACCES" ? 13 : 2, file);
}

function spawnWithChildProcess(file: string, args: string[], opts: SpawnOptions, stdio: StdioSpec[]): Child {
  const env = opts.env ?? process.env;
  const path = resolveExecutable(file, env);
  if (opts.cwd !== undefined) {
    const e = blameCwd(new SysError("spawn", "ENOENT", 2, file), opts.cwd);
    if (e instanceof SysError && e.syscall === "chdir") throw e;
  }
  const cp: ChildProcess = cpSpawn(path, args, {
    argv0: file,
    env,
    cwd: opts.cwd,
    detached: opts.detached ?? false,
    stdio: stdio.map((s) => (s === "socket" ? "pipe" : s)),
  });
  if (cp.pid === undefined) {
    // The reason comes as an 'error' event on the next tick; the checks above caught the common ones.
    cp.once("error", () => undefined);
    throw new SysError("spawn", "UNKNOWN", 0, file);
  }
  const child = new Child(cp.pid, (cp.stdio as (net.Socket | null)[]).slice(0, stdio.length));
  child.setRef((on) => (on ? cp.ref() : cp.unref()));
  liveSpawned.add(cp.pid); // libuv reaps it: keep the shim's reaper off it too
  const pid = cp.pid;
  cp.once("exit", (code, signal) => {
    liveSpawned.delete(pid);
    child.onExit(code, signal);
  });
  return child;
}

export interface RunOptions extends SpawnOptions {
  /** Written to the program's stdin, then EOF (default: EOF at once). */
  input?: Buffer | string;
  /** Kill the program once stdout or stderr hold more than this (execFile's maxBuffer). */
  maxBuffer?: number;
  /** Kill after this long (and reject with RunTimeoutError). */
  timeoutMs?: number;
  /** The signal for maxBuffer and timeouts (default SIGTERM, as execFile). */
  killSignal?: NodeJS.Signals;
}

export interface RunResult extends ExitStatus {
  stdout: Buffer;
  stderr: Buffer;
}

/** stdout or stderr outgrew maxBuffer; the program was killed. */
export class MaxBufferError extends Error {
  constructor(
    readonly stream: "stdout" | "stderr",
    readonly result: RunResult,
  ) {
    super(`${stream} maxBuffer length exceeded`);
    this.name = "MaxBufferError";
  }
}

/** The program ran past its timeout and was killed. */
export class RunTimeoutError extends Error {
  constructor(
    readonly timeoutMs: number,
    readonly result: RunResult,
  ) {
    super(`timed out after ${timeoutMs}ms`);
    this.name = "RunTimeoutError";
  }
}

/**
 * execFile's job: runs a program to completion, collecting stdout and stderr. Resolves with
 * any exit status (the caller judges it); rejects with SysError when it cannot start, and with
 * MaxBufferError or RunTimeoutError after killing it.
 */
export function runProgram(file: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    let child: Child;
    try {
      child = spawnChild(file, args, { ...opts, stdio: ["pipe", "pipe", "pipe"] });
    } catch (err) {
      return reject(err);
    }
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const size = { stdout: 0, stderr: 0 };
    let failure: ((r: RunResult) => Error) | undefined;
    const killSignal = opts.killSignal ?? "SIGTERM";
    const result = (): RunResult => ({
      code: child.exitCode,
      signal: child.signalCode,
      stdout: Buffer.concat(out),
      stderr: Buffer.concat(err),
    });
    const collect = (stream: "stdout" | "stderr", into: Buffer[]) => (b: Buffer) => {
      if (failure) return; // killed: what still comes (from a grandchild, say) is not kept
      const room = opts.maxBuffer === undefined ? b.length : opts.maxBuffer - size[stream];
      into.push(room < b.length ? b.subarray(0, Math.max(room, 0)) : b);
      size[stream] += b.length;
      if (room < b.length) {
        failure = (r) => new MaxBufferError(stream, r);
        child.kill(killSignal);
      }
    };
    child.stdout!.on("data", collect("stdout", out));
    child.stderr!.on("data", collect("stderr", err));
    const timer =
      opts.timeoutMs !== undefined
        ? setTimeout(() => {
            if (failure) return;
            failure = (r) => new RunTimeoutError(opts.timeoutMs!, r);
            child.kill(killSignal);
          }, opts.timeoutMs)
        : undefined;
    child.once("close", () => {
      clearTimeout(timer);
      const r = result();
      if (failure) reject(failure(r));
      else resolve(r);
    });
    // A program that exits without reading stdin gives EPIPE here; its exit status tells the story.
    child.stdin!.on("error", () => undefined);
    child.stdin!.end(opts.input ?? Buffer.alloc(0));
  });
}
