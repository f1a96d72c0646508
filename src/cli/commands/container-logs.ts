// berth logs: a container's output, read from its CRI log file.
import type { Command } from "commander";
import { setTimeout as sleep } from "node:timers/promises";
import { ContainerState } from "../../gen/cri/runtime/v1/api.js";
import type { Clients } from "../client.js";
import { ctxOf } from "../context.js";
import { CliError, EXIT_USAGE } from "../errors.js";
import { LineAssembler, LogFileReader, parseSince, type LogLine } from "../logs.js";
import { shortId } from "../output.js";
import { findContainer } from "../resolve.js";

/** Prints a container's log lines; with follow, keeps reading until the container stops running. */
export async function printLogs(
  c: Clients,
  containerId: string,
  logPath: string,
  opts: { follow?: boolean; since?: number; tail?: number; timestamps?: boolean; fromStart?: boolean },
): Promise<void> {
  const reader = new LogFileReader(logPath);
  const lines = new LineAssembler();
  const write = (l: LogLine) => {
    if (opts.since !== undefined && l.timeMs < opts.since) return;
    const out = l.stream === "stderr" ? process.stderr : process.stdout;
    out.write(opts.timestamps ? Buffer.concat([Buffer.from(`${l.time} `), l.content]) : l.content);
  };
  const take = () =>
    reader
      .read()
      .map((r) => lines.push(r))
      .filter((l): l is LogLine => l !== undefined);
  try {
    let first = take();
    if (opts.tail !== undefined) first = opts.tail <= 0 ? [] : first.slice(-opts.tail);
    first.forEach(write);
    if (opts.follow) {
      for (;;) {
        const st = await c.rt.containerStatus({ containerId }).catch(() => undefined);
        // Follow until the container has exited (or is gone); UNKNOWN can be a passing state.
        const over = !st?.status || st.status.state === ContainerState.CONTAINER_EXITED;
        take().forEach(write);
        if (over) break;
        await sleep(150);
      }
      // The last output may land in the file just after the exit is reported.
      await sleep(100);
      take().forEach(write);
    }
    lines.flush().forEach(write);
  } finally {
    reader.close();
  }
}

/** logs. */
export function registerLogsCommand(program: Command): void {
  program
    .command("logs")
    .description("Show a container's output (read from its CRI log file)")
    .argument("<container>", "id, id prefix or name")
    .option("-f, --follow", "keep printing new output until the container stops")
    .option("--since <time>", "only lines since a duration ago (10m, 1h) or a time (2024-05-01T10:00:00Z)")
    .option("-n, --tail <lines>", "only the last N lines")
    .option("-t, --timestamps", "prefix each line with its timestamp")
    .addHelpText(
      "after",
      `
Examples:
  berth logs web
  berth logs -f --tail 20 web
  berth logs --since 5m -t web`,
    )
    .action(
      async (
        ref: string,
        opts: { follow?: boolean; since?: string; tail?: string; timestamps?: boolean },
        cmd: Command,
      ) => {
        let since: number | undefined;
        try {
          since = opts.since ? parseSince(opts.since) : undefined;
        } catch (err) {
          throw new CliError((err as Error).message, undefined, EXIT_USAGE);
        }
        const tail = opts.tail === undefined || opts.tail === "all" ? undefined : Number(opts.tail);
        if (tail !== undefined && (!Number.isInteger(tail) || tail < 0))
          throw new CliError(`--tail must be a number of lines, not ${opts.tail}`, undefined, EXIT_USAGE);
        const { c } = ctxOf(cmd);
        const ctr = await findContainer(c, ref);
        const st = await c.rt.containerStatus({ containerId: ctr.id });
        if (!st.status?.logPath)
          throw new CliError(
            `container ${shortId(ctr.id)} has no log file`,
            "it was created without a log directory (pods made by kubelet or berth run have one)",
          );
        await printLogs(c, ctr.id, st.status.logPath, {
          follow: opts.follow,
          since,
          tail,
          timestamps: opts.timestamps,
        });
      },
    );
}
