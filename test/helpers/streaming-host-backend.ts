// A StreamingBackend for the streaming tests that runs real processes on the host instead of in
// containers: exec spawns the command (under util-linux `script` when a tty is asked for, with
// resizes applied to its pty via `stty -F`), attach joins a long-running process the test
// started, and port forwarding connects to 127.0.0.1, standing in for the pod's netns.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { readFile, readlink } from "node:fs/promises";
import net from "node:net";
import { constants } from "node:os";
import type { Duplex } from "node:stream";
import type { ExecResult, ExecStreams, StreamingBackend, TerminalSize } from "../../src/streaming/backend.js";

function shellQuote(args: string[]): string {
  return args.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(" ");
}

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The pty slave of the process `script` started (its only child). */
async function ptyOf(scriptPid: number): Promise<string | undefined> {
  for (let i = 0; i < 100; i++) {
    try {
      const children = (await readFile(`/proc/${scriptPid}/task/${scriptPid}/children`, "utf8")).trim();
      // Right after the fork the child still has script's stdin (a pipe); wait for the pty.
      const link = children ? await readlink(`/proc/${children.split(" ")[0]}/fd/0`) : "";
      if (link.startsWith("/dev/pts/")) return link;
    } catch {
      // not there yet, or already gone
    }
    await delay(20);
  }
  return undefined;
}

export class HostBackend implements StreamingBackend {
  /** Processes started by exec and still running. */
  readonly running = new Set<ChildProcess>();
  /** Every exec's pid, in order, so tests can check a process is really gone. */
  readonly pids: number[] = [];
  readonly containers = new Map<string, ChildProcess>();
  /** Open port-forward connections to targets. */
  readonly forwards = new Set<net.Socket>();

  exec(_containerId: string, cmd: string[], streams: ExecStreams, signal: AbortSignal): Promise<ExecResult> {
    const [file, args] = streams.tty ? ["script", ["-qfec", shellQuote(cmd), "/dev/null"]] : [cmd[0], cmd.slice(1)];
    // Its own process group, so an abort takes the whole command down.
    const child = spawn(file, args, { stdio: "pipe", detached: true });
    if (child.pid) this.pids.push(child.pid);
    this.running.add(child);
    const kill = () => {
      try {
        if (child.pid) process.kill(-child.pid, "SIGKILL");
      } catch {
        // already gone
      }
    };
    signal.addEventListener("abort", kill, { once: true });
    child.stdin.on("error", () => undefined); // EPIPE when the command does not read stdin
    if (streams.stdin) {
      streams.stdin.pipe(child.stdin);
    } else child.stdin.end();
    if (streams.stdout) child.stdout.pipe(streams.stdout, { end: false });
    else child.stdout.resume();
    if (streams.stderr) child.stderr.pipe(streams.stderr, { end: false });
    else child.stderr.resume();
    if (streams.tty) void this.applyResizes(child, streams.resize);

    return new Promise((resolve, reject) => {
      child.once("error", (err) => {
        this.running.delete(child);
        reject(err);
      });
      child.once("close", (code, sig) => {
        this.running.delete(child);
        signal.removeEventListener("abort", kill);
        streams.stdin?.unpipe(child.stdin);
        resolve({ exitCode: code ?? 128 + (sig ? constants.signals[sig] : 0) });
      });
    });
  }

  private async applyResizes(child: ChildProcess, sizes: AsyncIterable<TerminalSize>): Promise<void> {
    if (!child.pid) return;
    const pty = await ptyOf(child.pid);
    for await (const { width, height } of sizes) {
      if (!pty || child.exitCode !== null) continue;
      await new Promise<void>((resolve) =>
        execFile("stty", ["-F", pty, "rows", String(height), "cols", String(width)], () => resolve()),
      );
    }
  }

  /** Starts a long-running "container" process that attach can join. */
  startContainer(id: string, cmd: string[]): ChildProcess {
    const child = spawn(cmd[0], cmd.slice(1), { stdio: "pipe" });
    child.stdin.on("error", () => undefined);
    this.containers.set(id, child);
    child.once("close", () => this.containers.delete(id));
    return child;
  }

  attach(containerId: string, streams: ExecStreams, signal: AbortSignal): Promise<void> {
    const c = this.containers.get(containerId);
    if (!c) return Promise.reject(new Error(`container ${containerId} not found`));
    return new Promise((resolve) => {
      const onOut = (chunk: Buffer) => streams.stdout?.write(chunk);
      const onErr = (chunk: Buffer) => streams.stderr?.write(chunk);
      const onIn = (chunk: Buffer) => c.stdin?.write(chunk);
      c.stdout?.on("data", onOut);
      c.stderr?.on("data", onErr);
      streams.stdin?.on("data", onIn);
      const detach = () => {
        c.stdout?.off("data", onOut);
        c.stderr?.off("data", onErr);
        streams.stdin?.off("data", onIn);
        c.off("close", detach);
        signal.removeEventListener("abort", detach);
        resolve();
      };
      c.once("close", detach);
      signal.addEventListener("abort", detach, { once: true });
    });
  }

  portForward(_podSandboxId: string, port: number, stream: Duplex, signal: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      const sock = net.connect({ host: "127.0.0.1", port });
      this.forwards.add(sock);
      const abort = () => sock.destroy();
      signal.addEventListener("abort", abort, { once: true });
      sock.once("connect", () => {
        stream.pipe(sock);
        sock.pipe(stream);
      });
      let failure: Error | undefined;
      sock.once("error", (err) => (failure = err));
      sock.once("close", () => {
        this.forwards.delete(sock);
        signal.removeEventListener("abort", abort);
        stream.unpipe(sock);
        if (failure) reject(failure);
        else resolve();
      });
    });
  }
}
