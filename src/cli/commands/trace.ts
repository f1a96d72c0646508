// berth trace: the recent CRI calls as trees of spans with their timings, fetched from
// berthd over berth.v1.Berth/ListTraces. The tree is the call chain live: the CRI method,
// the core services it used, and the ttrpc calls to the shim.
import type { Command } from "commander";
import type { ListTracesResponse, Trace, TraceSpan } from "../../gen/berth/v1/berth.js";
import type { Clients } from "../client.js";
import { ctxOf } from "../context.js";
import { CliError, EXIT_USAGE } from "../errors.js";
import { parseFormat, structured } from "../output.js";

function listTraces(
  c: Clients,
  req: { traceId: string; limit: number; nameContains: string },
): Promise<ListTracesResponse> {
  return new Promise((resolve, reject) => c.berth.listTraces(req, (err, r) => (err ? reject(err) : resolve(r!))));
}

/** "1.234s", "12.3ms", "456µs". */
export function formatDuration(ns: bigint): string {
  if (ns < 0n) return "(open)";
  const n = Number(ns);
  if (n >= 1e9) return `${(n / 1e9).toFixed(3)}s`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}ms`;
  return `${Math.round(n / 1e3)}µs`;
}

/** One trace as an indented tree: each span with its duration, offset from the root's start and status. */
export function renderTrace(t: Trace): string {
  const root = t.spans[0];
  if (!root) return `trace ${t.traceId} (no spans)\n`;
  const children = new Map<string, TraceSpan[]>();
  for (const s of t.spans.slice(1)) {
    const list = children.get(s.parentSpanId) ?? [];
    list.push(s);
    children.set(s.parentSpanId, list);
  }
  const when = new Date(Number(root.startTime / 1_000_000n)).toISOString();
  const lines = [`trace ${t.traceId}  ${when}`];
  const walk = (s: TraceSpan, depth: number) => {
    const offset = s === root ? "" : ` +${formatDuration(s.startTime - root.startTime)}`;
    const status = s.status === "OK" ? "" : `  ${s.status}${s.error ? `: ${s.error}` : ""}`;
    const name = `${"  ".repeat(depth)}${s.name}`;
    lines.push(`  ${name.padEnd(58)} ${formatDuration(s.durationNanos).padStart(9)}${offset}${status}`);
    for (const c of children.get(s.spanId) ?? []) walk(c, depth + 1);
  };
  walk(root, 0);
  return lines.join("\n") + "\n";
}

export function registerTraceCommand(program: Command): void {
  program
    .command("trace")
    .description("Show recent CRI calls as trees of timed spans (CRI handler, services, ttrpc calls to shims)")
    .argument("[id]", "a trace id (or a unique prefix); without it the most recent traces")
    .option("-n, --last <n>", "how many recent traces to show", "10")
    .option("-f, --filter <text>", "only calls whose method name contains text, e.g. RunPodSandbox")
    .option("-o, --output <format>", "json or yaml")
    .addHelpText(
      "after",
      `
Examples:
  berth trace --last 3
  berth trace -f RunPodSandbox -n 1
  berth trace 4bf92f35`,
    )
    .action(async (id: string | undefined, opts: { last: string; filter?: string; output?: string }, cmd: Command) => {
      const format = parseFormat(opts.output);
      const limit = Number(opts.last);
      if (!Number.isInteger(limit) || limit < 1)
        throw new CliError(
          `--last must be a positive integer, not ${JSON.stringify(opts.last)}`,
          undefined,
          EXIT_USAGE,
        );
      const { c } = ctxOf(cmd);
      const res = await listTraces(c, { traceId: id ?? "", limit, nameContains: opts.filter ?? "" });
      if (id && res.traces.length === 0)
        throw new CliError(`no trace ${JSON.stringify(id)}: berthd keeps only recent traces`);
      if (format !== "table") {
        process.stdout.write(structured(res.traces, format) + "\n");
        return;
      }
      process.stdout.write(res.traces.map(renderTrace).join("\n"));
    });
}
