// crictl as a node operator runs it: a crictl.yaml naming berthd's socket for both endpoints,
// passed with --config (so the host's /etc/crictl.yaml never matters), and the binary built
// from sigs.k8s.io/cri-tools by scripts/go-tools.sh.
//
//   const c = new Crictl(goTool("crictl-1.37", "crictl"), d.socket, dir);
//   const r = await c.run(["pull", image]);           // { code, stdout, stderr }
//   const pf = c.start(["port-forward", pod, "8080"]); // a long-running one; pf.stop()
import { spawn, type ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";

export interface CrictlResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface CrictlProcess {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves once stdout matches; rejects (with the output so far) when it exits first or after timeoutMs. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<void>;
  exited: Promise<CrictlResult>;
  /** SIGINT (as Ctrl-C would), then the result. */
  stop(): Promise<CrictlResult>;
}

export class Crictl {
  readonly config: string;
  private readonly live = new Set<ChildProcess>();

  constructor(
    readonly bin: string,
    readonly socket: string,
    readonly dir: string,
  ) {
    this.config = join(dir, "crictl.yaml");
    writeFileSync(
      this.config,
      [
        `runtime-endpoint: unix://${socket}`,
        `image-endpoint: unix://${socket}`,
        "timeout: 60",
        "debug: false",
        "",
      ].join("\n"),
    );
  }

  /** The argv that runs crictl with this config (for a pty). */
  argv(args: string[]): string[] {
    return [this.bin, "--config", this.config, ...args];
  }

  private spawn(args: string[], withConfig: boolean): ChildProcess {
    const argv = withConfig ? ["--config", this.config, ...args] : args;
    const child = spawn(this.bin, argv, {
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: this.dir },
      stdio: ["pipe", "pipe", "pipe"],
    });
    this.live.add(child);
    child.once("close", () => this.live.delete(child));
    return child;
  }

  /** Runs crictl to completion; `input` is its stdin (closed after). */
  run(args: string[], opts: { input?: string; withConfig?: boolean } = {}): Promise<CrictlResult> {
    const p = this.start(args, opts);
    if (opts.input !== undefined) p.child.stdin!.end(opts.input);
    else p.child.stdin!.end();
    return p.exited;
  }

  /** Starts crictl and leaves it running (stdin open). */
  start(args: string[], opts: { withConfig?: boolean } = {}): CrictlProcess {
    const child = this.spawn(args, opts.withConfig ?? true);
    let stdout = "";
    let stderr = "";
    const waiters = new Set<() => void>();
    child.stdout!.on("data", (b: Buffer) => {
      stdout += b.toString();
      for (const w of waiters) w();
    });
    child.stderr!.on("data", (b: Buffer) => (stderr += b.toString()));
    child.stdin!.on("error", () => {}); // crictl may exit before reading its stdin
    // A hung crictl must not hang the suite; every call has its own timeout well inside this.
    const watchdog = setTimeout(() => child.kill("SIGKILL"), 5 * 60_000);
    const exited = new Promise<CrictlResult>((resolve, reject) => {
      child.once("error", reject);
      child.once("close", (code) => {
        clearTimeout(watchdog);
        for (const w of waiters) w();
        resolve({ code, stdout, stderr });
      });
    });
    let closed = false;
    void exited.then(() => (closed = true));
    return {
      child,
      stdout: () => stdout,
      stderr: () => stderr,
      exited,
      waitFor(pattern, timeoutMs = 60_000) {
        return new Promise((resolve, reject) => {
          const check = () => {
            if (pattern.test(stdout)) done(null);
            else if (closed || child.exitCode !== null || child.signalCode !== null)
              done(new Error(`crictl exited before printing ${pattern}:\n${stdout}\n${stderr}`));
          };
          const timer = setTimeout(
            () => done(new Error(`crictl never printed ${pattern}:\n${stdout}\n${stderr}`)),
            timeoutMs,
          );
          const done = (err: Error | null) => {
            clearTimeout(timer);
            waiters.delete(check);
            if (err) reject(err);
            else resolve();
          };
          waiters.add(check);
          check();
        });
      },
      stop: () => {
        if (child.exitCode === null && child.signalCode === null) child.kill("SIGINT");
        return exited;
      },
    };
  }

  /** Kills whatever is still running (a failed test's leftovers). */
  killAll(): void {
    for (const c of this.live) c.kill("SIGKILL");
  }

  /** How many crictl processes are still running. */
  running(): number {
    return this.live.size;
  }
}
