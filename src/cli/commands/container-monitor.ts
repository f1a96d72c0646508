// berth stats and berth events: live resource usage and the container event stream.
import type { Command } from "commander";
import { setTimeout as sleep } from "node:timers/promises";
import {
  ContainerEventResponse as ContainerEventResponseMsg,
  ContainerStats as ContainerStatsMsg,
  ContainerEventType,
  type ContainerEventResponse,
  type ContainerStats,
} from "../../gen/cri/runtime/v1/api.js";
import { ctxOf } from "../context.js";
import { humanBinary, humanSize, parseFormat, shortId, structured, table } from "../output.js";
import { findContainer } from "../resolve.js";

function cpuPercent(prev: ContainerStats | undefined, cur: ContainerStats): number | undefined {
  const nano = cur.cpu?.usageNanoCores?.value;
  if (nano !== undefined && nano > 0n) return Number(nano) / 1e7;
  const a = prev?.cpu?.usageCoreNanoSeconds?.value;
  const b = cur.cpu?.usageCoreNanoSeconds?.value;
  const ta = prev?.cpu?.timestamp;
  const tb = cur.cpu?.timestamp;
  if (a === undefined || b === undefined || !ta || !tb || tb <= ta) return undefined;
  return (Number(b - a) / Number(tb - ta)) * 100;
}

/** stats, events. */
export function registerMonitorCommands(program: Command): void {
  program
    .command("stats")
    .description("Live CPU, memory and disk usage of running containers")
    .argument("[container...]", "only these containers")
    .option("--no-stream", "print one sample and exit")
    .option("-o, --output <format>", "json or yaml (implies --no-stream)")
    .addHelpText(
      "after",
      `
Examples:
  berth stats
  berth stats --no-stream web
  berth stats -o json`,
    )
    .action(async (refs: string[], opts: { stream: boolean; output?: string }, cmd: Command) => {
      const format = parseFormat(opts.output);
      const { c } = ctxOf(cmd);
      const ids = await Promise.all(refs.map(async (r) => (await findContainer(c, r)).id));
      const sample = async () => {
        const { stats } = await c.rt.listContainerStats({});
        return stats.filter((s) => ids.length === 0 || ids.includes(s.attributes?.id ?? ""));
      };
      if (format !== "table") {
        process.stdout.write(
          structured(
            (await sample()).map((x) => ContainerStatsMsg.toJSON(x)),
            format,
          ) + "\n",
        );
        return;
      }
      const live = opts.stream && process.stdout.isTTY;
      let prev = new Map<string, ContainerStats>();
      const render = (cur: ContainerStats[]) =>
        table(
          ["CONTAINER ID", "NAME", "CPU %", "MEM USAGE", "DISK (RW LAYER)"],
          cur.map((s) => {
            const pct = cpuPercent(prev.get(s.attributes?.id ?? ""), s);
            const mem = s.memory?.workingSetBytes?.value ?? s.memory?.usageBytes?.value;
            const disk = s.writableLayer?.usedBytes?.value;
            return [
              shortId(s.attributes?.id ?? ""),
              s.attributes?.metadata?.name ?? "",
              pct === undefined ? "--" : `${pct.toFixed(2)}%`,
              mem === undefined ? "--" : humanBinary(mem),
              disk === undefined ? "--" : humanSize(disk),
            ];
          }),
        );
      // CPU % needs two samples; take the second one a second later.
      let cur = await sample();
      prev = new Map(cur.map((s) => [s.attributes?.id ?? "", s]));
      await sleep(1000);
      cur = await sample();
      if (!live) {
        process.stdout.write(render(cur) + "\n");
        return;
      }
      let stop = false;
      process.once("SIGINT", () => (stop = true));
      process.stdout.write("\x1b[?25l");
      try {
        while (!stop) {
          process.stdout.write("\x1b[2J\x1b[H" + render(cur) + "\n");
          prev = new Map(cur.map((s) => [s.attributes?.id ?? "", s]));
          await sleep(1000);
          cur = await sample();
        }
      } finally {
        process.stdout.write("\x1b[?25h");
      }
    });

  program
    .command("events")
    .description("Stream container events (created, started, stopped, deleted)")
    .option("-o, --output <format>", "json: one object per line")
    .addHelpText(
      "after",
      `
Examples:
  berth events
  berth events -o json | jq -c 'select(.containerEventType == 2)'`,
    )
    .action(async (opts: { output?: string }, cmd: Command) => {
      const format = parseFormat(opts.output);
      const { c } = ctxOf(cmd);
      const call = c.runtime.getContainerEvents({});
      const names: Record<number, string> = {
        [ContainerEventType.CONTAINER_CREATED_EVENT]: "created",
        [ContainerEventType.CONTAINER_STARTED_EVENT]: "started",
        [ContainerEventType.CONTAINER_STOPPED_EVENT]: "stopped",
        [ContainerEventType.CONTAINER_DELETED_EVENT]: "deleted",
      };
      process.once("SIGINT", () => call.cancel());
      try {
        for await (const ev of call as AsyncIterable<ContainerEventResponse>) {
          if (format === "json") {
            process.stdout.write(JSON.stringify(ContainerEventResponseMsg.toJSON(ev)) + "\n");
            continue;
          }
          const t = new Date(Number(ev.createdAt / 1_000_000n)).toISOString();
          const ctr = ev.containersStatuses.find((s) => s.id === ev.containerId);
          const name = ctr?.metadata?.name ? ` name=${ctr.metadata.name}` : "";
          const pod = ev.podSandboxStatus ? ` pod=${shortId(ev.podSandboxStatus.id)}` : "";
          const exit =
            ev.containerEventType === ContainerEventType.CONTAINER_STOPPED_EVENT && ctr
              ? ` exitCode=${ctr.exitCode}`
              : "";
          process.stdout.write(
            `${t} container ${names[ev.containerEventType] ?? "unknown"} ${shortId(ev.containerId)}${name}${pod}${exit}\n`,
          );
        }
      } catch (err) {
        if ((err as { code?: number }).code === 1) return; // CANCELLED by Ctrl-C
        throw err;
      }
    });
}
