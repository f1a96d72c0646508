// Runs test/go/cri-bench (k8s.io/cri-client, as kubelet) against one runtime's socket. At
// each "HOLD label" line it prints, the caller measures memory; the client waits meanwhile.
import { spawn } from "node:child_process";
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

export function runClient(
  t: ClientTarget,
  images: ClientImages,
  s: ClientSizes,
  onHold: (label: string) => Promise<void>,
  log: (msg: string) => void,
  signal?: AbortSignal,
): Promise<ClientResult> {
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
    "-hold",
  ]; // prettier-ignore
  // on abort (Ctrl-C) the client gets SIGTERM: it stops, and the caller then removes the pods
  const child = spawn(goTool("cri-bench", "cri-bench"), args, {
    stdio: ["pipe", "pipe", "pipe"],
    signal,
    killSignal: "SIGTERM",
  });
  let stderr = "";
  child.stderr!.on("data", (b: Buffer) => {
    stderr = (stderr + b.toString()).slice(-10_000);
    for (const line of b.toString().split("\n")) if (line.trim()) log(line.replace(/^\[cri-bench\] /, ""));
  });
  return new Promise((resolve, reject) => {
    let result: ClientResult | undefined;
    let chain = Promise.resolve();
    child.once("error", (err) => {
      if (err.name !== "AbortError") reject(err);
    });
    createInterface({ input: child.stdout! }).on("line", (line) => {
      if (line.startsWith("HOLD ")) {
        const label = line.slice(5);
        chain = chain
          .then(() => onHold(label))
          .catch((err: Error) => log(`memory at ${label}: ${err.message}`))
          .then(() => void child.stdin!.write("\n"));
      } else if (line.startsWith("RESULT ")) {
        result = JSON.parse(line.slice(7)) as ClientResult;
      }
    });
    child.once("exit", (code, signal) => {
      if (code === 0 && result) resolve(result);
      else reject(new Error(`cri-bench exited with ${code ?? signal}: ${stderr.split("\n").slice(-5).join(" | ")}`));
    });
  });
}
