// Renders berth.v1.Berth/PullImage progress. On a terminal: one live bar per blob with bytes
// and speed, and a total bar below (cli-progress MultiBar). Otherwise: one plain line per
// blob per phase change, which logs and CI output read well.
import { MultiBar, type Options, type Params } from "cli-progress";
import type { PullImageProgress } from "../gen/berth/v1/berth.js";
import { humanSize, shortId } from "./output.js";

export interface ProgressView {
  event(p: PullImageProgress): void;
  /** Stops drawing (leaves the final frame on a terminal). */
  stop(): void;
}

interface BlobState {
  status: string;
  done: number;
  total: number;
  startedAt: number;
}

function rate(bytes: number, since: number): string {
  const secs = (Date.now() - since) / 1000;
  return secs > 0.2 && bytes > 0 ? `${humanSize(Math.round(bytes / secs))}/s` : "";
}

const label: Record<string, string> = {
  resolved: "Resolved",
  downloading: "Downloading",
  downloaded: "Downloaded",
  unpacking: "Extracting",
  unpacked: "Pull complete",
};

/** The live multi-bar view for a terminal stream. */
export function ttyProgress(stream: NodeJS.WriteStream, image: string): ProgressView {
  const blobs = new Map<string, BlobState & { bar: ReturnType<MultiBar["create"]> }>();
  const started = Date.now();
  const format = (_o: Options, _params: Params, payload: { line: () => string }) => payload.line();
  const multi = new MultiBar({
    stream,
    format,
    hideCursor: true,
    clearOnComplete: false,
    stopOnComplete: false,
    linewrap: false,
    fps: 10,
    barsize: 30,
    gracefulExit: true,
  });
  const barOf = (done: number, total: number, width = 30) => {
    const frac = total > 0 ? Math.min(1, done / total) : 0;
    const full = Math.round(frac * width);
    return (
      "[" +
      "=".repeat(Math.max(0, full - 1)) +
      (full > 0 ? (full === width ? "=" : ">") : "") +
      " ".repeat(width - full) +
      "]"
    );
  };
  multi.create(1, 0, { line: () => `Pulling ${image}` });
  const totals = () => {
    let done = 0;
    let total = 0;
    for (const b of blobs.values()) {
      done += b.done;
      total += Math.max(b.total, b.done);
    }
    return { done, total };
  };
  const totalLine = () => {
    const { done, total } = totals();
    const finished = [...blobs.values()].filter(
      (b) =>
        b.status === "unpacked" ||
        b.status === "downloaded" ||
        (b.status === "downloading" && b.total > 0 && b.done >= b.total),
    ).length;
    return `Total: ${" ".repeat(12)}${barOf(done, total)} ${humanSize(done)}/${humanSize(total)} ${rate(done, started)}  (${finished}/${blobs.size} done)`;
  };
  let totalBar = multi.create(1, 0, { line: totalLine });
  return {
    event(p) {
      if (p.status === "resolved" || p.status === "done" || !p.digest) return;
      let b = blobs.get(p.digest);
      if (!b) {
        const state = { status: p.status, done: 0, total: 0, startedAt: Date.now() };
        const line = () => {
          const s = blobs.get(p.digest)!;
          const name = shortId(p.digest);
          if (s.status === "downloading" && s.total > 0 && s.done >= s.total)
            return `${name}: Download complete  ${humanSize(s.total)}`;
          if (s.status === "downloading") {
            return `${name}: ${label.downloading.padEnd(13)} ${barOf(s.done, s.total)} ${humanSize(s.done)}/${humanSize(s.total)} ${rate(s.done, s.startedAt)}`;
          }
          if (s.status === "unpacked" && s.total === 0) return `${name}: Already exists`;
          return `${name}: ${label[s.status] ?? s.status}${s.total ? `  ${humanSize(s.total)}` : ""}`;
        };
        // New blobs go above the total line: recreate it so it stays last.
        multi.remove(totalBar);
        b = { ...state, bar: multi.create(1, 0, { line }) };
        blobs.set(p.digest, b);
        totalBar = multi.create(1, 0, { line: totalLine });
      }
      b.status = p.status;
      if (p.status === "downloading") {
        b.done = Number(p.done);
        b.total = Number(p.total);
      } else if (p.status === "downloaded" && b.total > 0) {
        b.done = b.total;
      }
      b.bar.update(0);
    },
    stop() {
      multi.update();
      multi.stop();
    },
  };
}

/** One line per blob per phase, for pipes and files. */
export function plainProgress(stream: NodeJS.WritableStream): ProgressView {
  const seen = new Map<string, { status: string; total: number }>();
  return {
    event(p) {
      if (p.status === "done" || !p.digest) return;
      const prev = seen.get(p.digest);
      if (prev?.status === p.status) {
        if (p.status === "downloading") prev.total = Number(p.total);
        return;
      }
      const total = p.status === "downloading" ? Number(p.total) : (prev?.total ?? 0);
      seen.set(p.digest, { status: p.status, total });
      const size = (p.status === "downloading" || p.status === "downloaded") && total > 0 ? ` ${humanSize(total)}` : "";
      stream.write(`${shortId(p.digest)}: ${p.status}${size}\n`);
    },
    stop() {},
  };
}
