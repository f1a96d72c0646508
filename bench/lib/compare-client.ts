// Runs test/go/cri-bench (k8s.io/cri-client, as kubelet) against one runtime's socket, one
// step at a time: the client stops at each "HOLD label" line it prints (a memory point, a quiet
// wait before a timed phase or its timing, or a turn between blocks of a timed loop) until it is released,
// so that the caller can read memory there or let another runtime's client run.
import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { goTool } from "../../test/helpers/go-tools.js";

export interface ClientSizes {
  samples: number;
  statusSamples: number;
  /** untimed rounds of the reads before they are timed a second time (the "warm" rows) */
  warmReads: number;
  list: number;
  listPods: number;
  listSamples: number;
  churn: number;
  concurrent: number[];
  /** how many bursts of each size in `concurrent` (the row's samples; default 1 each) */
  concurrentTimes?: number[];
  pullsSmall: number;
  pullsBig: number;
  /** blocks of each timed loop (lifecycles, reads, pulls), with a "turn" hold between (0: none) */
  turns: number;
}

export interface ClientResult {
  /** per row, every sample in ms */
  samples: Record<string, number[]>;
  listed: number;
}

export interface ClientTarget {
  socket: string;
  logDir: string;
  cgroupParent: string;
}

export interface ClientImages {
  busybox: string;
  small: string;
  big: string;
}

/** What the client did last: stopped at a hold, or exited with its result. */
export type Step = { hold: string } | { result: ClientResult };

export class SteppedClient {
  private readonly child: ChildProcess;
  private stderr = "";
  private readonly steps: (Step | Error)[] = [];
  private waiter: ((s: Step | Error) => void) | undefined;

  constructor(t: ClientTarget, images: ClientImages, s: ClientSizes, log: (msg: string) => void, signal?: AbortSignal) {
    const args = [
      "-socket", t.socket,
      "-image", images.busybox,
      "-small-image", images.small,
      "-big-image", images.big,
      "-log-dir", t.logDir,
      "-cgroup-parent", t.cgroupParent,
      "-samples", String(s.samples),
      "-status-samples", String(s.statusSamples),
      "-warm-reads", String(s.warmReads),
      "-list", String(s.list),
      "-list-pods", String(s.listPods),
      "-list-samples", String(s.listSamples),
      "-churn", String(s.churn),
      "-concurrent", s.concurrent.map((n, i) => `${n}x${s.concurrentTimes?.[i] ?? 1}`).join(","),
      "-pulls-small", String(s.pullsSmall),
      "-pulls-big", String(s.pullsBig),
      "-turns", String(s.turns),
      "-hold",
    ]; // prettier-ignore
    // on abort (Ctrl-C) the client gets SIGTERM: it stops, and the caller then removes the pods
    this.child = spawn(goTool("cri-bench", "cri-bench"), args, {
      stdio: ["pipe", "pipe", "pipe"],
      signal,
      killSignal: "SIGTERM",
    });
    this.child.stderr!.on("data", (b: Buffer) => {
      this.stderr = (this.stderr + b.toString()).slice(-10_000);
      for (const line of b.toString().split("\n")) if (line.trim()) log(line.replace(/^\[cri-bench\] /, ""));
    });
    let result: ClientResult | undefined;
    this.child.once("error", (err) => {
      if (err.name !== "AbortError") this.push(err);
    });
    createInterface({ input: this.child.stdout! }).on("line", (line) => {
      if (line.startsWith("HOLD ")) this.push({ hold: line.slice(5) });
      else if (line.startsWith("RESULT ")) result = JSON.parse(line.slice(7)) as ClientResult;
    });
    this.child.once("exit", (code, sig) => {
      if (code === 0 && result) this.push({ result });
      else
        this.push(new Error(`cri-bench exited with ${code ?? sig}: ${this.stderr.split("\n").slice(-5).join(" | ")}`));
    });
  }

  private push(s: Step | Error): void {
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w(s);
    } else this.steps.push(s);
  }

  /** The next hold the client stops at, or its result once it exited; rejects if it failed. */
  async next(): Promise<Step> {
    const s = this.steps.shift() ?? (await new Promise<Step | Error>((r) => (this.waiter = r)));
    if (s instanceof Error) throw s;
    return s;
  }

  /** Lets the client go on from the hold it stopped at. */
  release(): void {
    this.child.stdin!.write("\n");
  }

  /** Stops a client that has not finished (the caller removes what it left). */
  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGTERM");
  }
}

/** Runs the client to its end alone, calling onHold at each hold before releasing it. */
export async function runClient(
  t: ClientTarget,
  images: ClientImages,
  s: ClientSizes,
  onHold: (label: string) => Promise<void>,
  log: (msg: string) => void,
  signal?: AbortSignal,
): Promise<ClientResult> {
  const c = new SteppedClient(t, images, s, log, signal);
  for (;;) {
    const step = await c.next();
    if ("result" in step) return step.result;
    await onHold(step.hold).catch((err: Error) => log(`at ${step.hold}: ${err.message}`));
    c.release();
  }
}
