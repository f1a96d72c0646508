// Container and pod commands: ps, pods, stop, rm, inspect, logs, stats, events, exec.
import { status as Code } from "@grpc/grpc-js";
import type { Command } from "commander";
import { rmSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import {
  Container as ContainerMsg,
  ContainerEventResponse as ContainerEventResponseMsg,
  ContainerStats as ContainerStatsMsg,
  ContainerStatus as ContainerStatusMsg,
  Image as ImageMsg,
  PodSandbox as PodSandboxMsg,
  PodSandboxStatus as PodSandboxStatusMsg,
  ContainerEventType,
  ContainerState,
  type Container,
  type ContainerEventResponse,
  type ContainerStats,
  type ContainerStatus,
} from "../../gen/cri/runtime/v1/api.js";
import type { Clients } from "../client.js";
import { ctxOf } from "../context.js";
import { CliError, EXIT_USAGE, isCode } from "../errors.js";
import { LineAssembler, LogFileReader, parseSince, type LogLine } from "../logs.js";
import { ago, emit, humanBinary, humanSize, parseFormat, shortId, structured, table } from "../output.js";
import { streamSession } from "../remotecommand.js";
import { findContainer, findImage, findPod } from "../resolve.js";
import { ANNOTATION_LOG_DIR, LABEL_RUN, imageOf, podStateName, stateName, statusText } from "../state.js";

/** Removes a container; a pod that `berth run` made for it goes with it (and its log directory). */
export async function removeContainer(c: Clients, ctr: Container, force: boolean): Promise<void> {
  if (ctr.state === ContainerState.CONTAINER_RUNNING) {
    if (!force) {
      throw new CliError(
        `container ${shortId(ctr.id)} is running`,
        `stop it first (berth stop ${shortId(ctr.id)}) or use berth rm -f`,
      );
    }
    await c.rt.stopContainer({ containerId: ctr.id, timeout: 0n });
  }
  await c.rt.removeContainer({ containerId: ctr.id });
  if (ctr.labels[LABEL_RUN]) await removeRunPod(c, ctr.podSandboxId);
}

/** Stops and removes a pod `berth run` made, and the log directory the CLI created for it. */
export async function removeRunPod(c: Clients, podId: string): Promise<void> {
  const { items } = await c.rt.listPodSandbox({ filter: { id: podId } });
  const pod = items[0];
  await c.rt.stopPodSandbox({ podSandboxId: podId });
  await c.rt.removePodSandbox({ podSandboxId: podId });
  const dir = pod?.annotations[ANNOTATION_LOG_DIR];
  if (dir) rmSync(dir, { recursive: true, force: true });
}

async function statuses(c: Clients, ids: string[]): Promise<Map<string, ContainerStatus>> {
  const out = new Map<string, ContainerStatus>();
  await Promise.all(
    ids.map(async (id) => {
      try {
        const r = await c.rt.containerStatus({ containerId: id });
        if (r.status) out.set(id, r.status);
      } catch {
        // removed meanwhile: shown from the list entry
      }
    }),
  );
  return out;
}

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

export function registerContainerCommands(program: Command): void {
  program
    .command("ps")
    .description("List containers (running ones unless -a)")
    .option("-a, --all", "show all containers, not only running ones")
    .option("-q, --quiet", "only container ids")
    .option("--pod <pod>", "only containers of this pod (id, prefix or name)")
    .option("--no-trunc", "show full ids")
    .option("-o, --output <format>", "json or yaml (default: a table)")
    .addHelpText(
      "after",
      `
Examples:
  berth ps
  berth ps -a
  berth ps -aq | xargs berth rm -f
  berth ps --output yaml`,
    )
    .action(
      async (opts: { all?: boolean; quiet?: boolean; pod?: string; trunc: boolean; output?: string }, cmd: Command) => {
        parseFormat(opts.output);
        const { c } = ctxOf(cmd);
        const podSandboxId = opts.pod ? (await findPod(c, opts.pod)).id : "";
        const { containers } = await c.rt.listContainers({
          filter: { podSandboxId, state: opts.all ? undefined : { state: ContainerState.CONTAINER_RUNNING } },
        });
        containers.sort((a, b) => Number(b.createdAt - a.createdAt));
        const id = (s: string) => (opts.trunc ? shortId(s) : s);
        if (opts.quiet) return emit(containers, opts, { headers: [], row: () => [], id: (x) => id(x.id) });
        const st = opts.output
          ? new Map<string, ContainerStatus>()
          : await statuses(
              c,
              containers.map((x) => x.id),
            );
        emit(containers, opts, {
          headers: ["CONTAINER ID", "IMAGE", "CREATED", "STATUS", "NAME", "POD ID"],
          row: (x) => [
            id(x.id),
            imageOf(x),
            ago(x.createdAt),
            statusText(st.get(x.id), x),
            x.metadata?.name ?? "",
            id(x.podSandboxId),
          ],
          id: (x) => id(x.id),
          data: (x) => ContainerMsg.toJSON(x),
        });
      },
    );

  program
    .command("pods")
    .description("List pod sandboxes")
    .option("-q, --quiet", "only pod ids")
    .option("--no-trunc", "show full ids")
    .option("-o, --output <format>", "json or yaml (default: a table)")
    .addHelpText(
      "after",
      `
Examples:
  berth pods
  berth pods -q
  berth pods --output json`,
    )
    .action(async (opts: { quiet?: boolean; trunc: boolean; output?: string }, cmd: Command) => {
      parseFormat(opts.output);
      const { c } = ctxOf(cmd);
      const { items } = await c.rt.listPodSandbox({});
      items.sort((a, b) => Number(b.createdAt - a.createdAt));
      const id = (s: string) => (opts.trunc ? shortId(s) : s);
      emit(items, opts, {
        headers: ["POD ID", "CREATED", "STATE", "NAME", "NAMESPACE", "RUNTIME"],
        row: (p) => [
          id(p.id),
          ago(p.createdAt),
          podStateName(p.state),
          p.metadata?.name ?? "",
          p.metadata?.namespace ?? "",
          p.runtimeHandler || "(default)",
        ],
        id: (p) => id(p.id),
        data: (p) => PodSandboxMsg.toJSON(p),
      });
    });

  program
    .command("stop")
    .description("Stop running containers (their stop signal, then SIGKILL after the timeout)")
    .argument("<container...>", "ids, id prefixes or names")
    .option("-t, --time <seconds>", "seconds to wait before killing", "10")
    .addHelpText(
      "after",
      `
Examples:
  berth stop web
  berth stop -t 0 3f57d9401f8d`,
    )
    .action(async (refs: string[], opts: { time: string }, cmd: Command) => {
      const timeout = Number(opts.time);
      if (!Number.isInteger(timeout) || timeout < 0)
        throw new CliError(`--time must be a whole number of seconds, not ${opts.time}`, undefined, EXIT_USAGE);
      const { c } = ctxOf(cmd);
      for (const ref of refs) {
        const ctr = await findContainer(c, ref);
        await c.rt.stopContainer(
          { containerId: ctr.id, timeout: BigInt(timeout) },
          { timeoutMs: (timeout + 30) * 1000 },
        );
        process.stdout.write(`${ref}\n`);
      }
    });

  program
    .command("rm")
    .description("Remove containers (and the pod `berth run` made for each)")
    .argument("<container...>", "ids, id prefixes or names")
    .option("-f, --force", "stop running containers first")
    .addHelpText(
      "after",
      `
Examples:
  berth rm web
  berth rm -f $(berth ps -aq)`,
    )
    .action(async (refs: string[], opts: { force?: boolean }, cmd: Command) => {
      const { c } = ctxOf(cmd);
      let failed = 0;
      for (const ref of refs) {
        try {
          await removeContainer(c, await findContainer(c, ref), !!opts.force);
          process.stdout.write(`${ref}\n`);
        } catch (err) {
          if (!(err instanceof CliError)) throw err;
          process.stderr.write(`berth: ${err.message}${err.hint ? `\n  hint: ${err.hint}` : ""}\n`);
          failed++;
        }
      }
      if (failed) process.exitCode = 1;
    });

  program
    .command("inspect")
    .description("Show the full status of containers, pods or images")
    .argument("<name...>", "container, pod or image (id, prefix, name or reference)")
    .option("--type <type>", "container, pod or image (default: whichever matches first)")
    .option("-o, --output <format>", "json (default) or yaml")
    .addHelpText(
      "after",
      `
Examples:
  berth inspect web
  berth inspect --type pod web
  berth inspect busybox --output yaml
  berth inspect web | jq -r '.[0].status.logPath'`,
    )
    .action(async (refs: string[], opts: { type?: string; output?: string }, cmd: Command) => {
      const format = parseFormat(opts.output ?? "json");
      if (opts.type && !["container", "pod", "image"].includes(opts.type)) {
        throw new CliError(
          `--type must be container, pod or image, not ${JSON.stringify(opts.type)}`,
          undefined,
          EXIT_USAGE,
        );
      }
      const { c } = ctxOf(cmd);
      const parseInfo = (info: Record<string, string>) =>
        Object.fromEntries(
          Object.entries(info).map(([k, v]) => {
            try {
              return [k, JSON.parse(v) as unknown];
            } catch {
              return [k, v];
            }
          }),
        );
      const out: unknown[] = [];
      for (const ref of refs) {
        const tryType = async (t: string): Promise<unknown> => {
          if (t === "container") {
            const ctr = await findContainer(c, ref);
            const r = await c.rt.containerStatus({ containerId: ctr.id, verbose: true });
            return {
              type: "container",
              status: r.status && ContainerStatusMsg.toJSON(r.status),
              info: parseInfo(r.info),
            };
          }
          if (t === "pod") {
            const pod = await findPod(c, ref);
            const r = await c.rt.podSandboxStatus({ podSandboxId: pod.id, verbose: true });
            return {
              type: "pod",
              status: r.status && PodSandboxStatusMsg.toJSON(r.status),
              info: parseInfo(r.info),
              containers: r.containersStatuses.map((x) => ContainerStatusMsg.toJSON(x)),
            };
          }
          const img = await findImage(c, ref);
          if (!img) throw new CliError(`no such image: ${ref}`, `pull it with berth pull ${ref}`);
          const r = await c.img.imageStatus({ image: { image: ref }, verbose: true });
          return { type: "image", status: r.image && ImageMsg.toJSON(r.image), info: parseInfo(r.info) };
        };
        const order = opts.type ? [opts.type] : ["container", "pod", "image"];
        let found: unknown;
        for (const t of order) {
          try {
            found = await tryType(t);
            break;
          } catch (err) {
            if (!(err instanceof CliError) || order.length === 1) throw err;
          }
        }
        if (found === undefined)
          throw new CliError(
            `no container, pod or image named ${ref}`,
            "list them with berth ps -a, berth pods, berth images",
          );
        out.push(found);
      }
      process.stdout.write(structured(out, format === "table" ? "json" : format) + "\n");
    });

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

  program
    .command("exec")
    .description("Run a command in a running container")
    .argument("<container>", "id, id prefix or name")
    .argument("<command...>", "command and arguments")
    .option("-i, --interactive", "keep stdin open and send it to the command")
    .option("-t, --tty", "allocate a terminal")
    .passThroughOptions()
    .addHelpText(
      "after",
      `
Examples:
  berth exec web ls /
  berth exec -it web sh
  echo hi | berth exec -i web cat

Exits with the command's exit code. With -t, Ctrl-C goes into the container's terminal.`,
    )
    .action(async (ref: string, command: string[], opts: { interactive?: boolean; tty?: boolean }, cmd: Command) => {
      const { c } = ctxOf(cmd);
      const ctr = await findContainer(c, ref);
      if (ctr.state !== ContainerState.CONTAINER_RUNNING) {
        throw new CliError(
          `container ${shortId(ctr.id)} is ${stateName(ctr.state)}, not running`,
          "start a new one with berth run",
        );
      }
      const tty = !!opts.tty;
      if (tty && !process.stdin.isTTY && opts.interactive) {
        process.stderr.write("berth: warning: -t given but stdin is not a terminal\n");
      }
      let url: string;
      try {
        ({ url } = await c.rt.exec({
          containerId: ctr.id,
          cmd: command,
          tty,
          stdin: !!opts.interactive,
          stdout: true,
          stderr: !tty,
        }));
      } catch (err) {
        if (!isCode(err, Code.UNIMPLEMENTED) || opts.interactive || tty) throw err;
        // No streaming server in this berthd: ExecSync gives the same result, just not live.
        const r = await c.rt.execSync({ containerId: ctr.id, cmd: command, timeout: 0n }, { timeoutMs: 24 * 3600_000 });
        process.stdout.write(r.stdout);
        process.stderr.write(r.stderr);
        process.exitCode = r.exitCode;
        return;
      }
      const r = await streamSession(url, { stdin: !!opts.interactive, tty });
      if (r.error) throw new CliError(r.error);
      process.exitCode = r.exitCode ?? 0;
    });
}
