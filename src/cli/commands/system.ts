// info, version, completion (and the hidden name lister the completions call).
import { status as Code } from "@grpc/grpc-js";
import type { Command } from "commander";
import { InfoResponse } from "../../gen/berth/v1/berth.js";
import { ContainerState } from "../../gen/cri/runtime/v1/api.js";
import type { Clients } from "../client.js";
import { ctxOf } from "../context.js";
import { CliError, EXIT_USAGE, isCode } from "../errors.js";
import { bold, green, humanDuration, humanSize, parseFormat, plain, red, structured } from "../output.js";
import { CLIENT_VERSION } from "../version.js";
import { bashCompletion, zshCompletion } from "../completion.js";

function berthInfo(c: Clients): Promise<InfoResponse> {
  return new Promise((resolve, reject) => c.berth.info({}, (err, r) => (err ? reject(err) : resolve(r!))));
}

/** Runs `f`, giving undefined when the daemon does not implement it yet. */
async function optional<T>(f: () => Promise<T>): Promise<T | undefined> {
  try {
    return await f();
  } catch (err) {
    if (isCode(err, Code.UNIMPLEMENTED)) return undefined;
    throw err;
  }
}

export function registerSystemCommands(program: Command): void {
  program
    .command("version")
    .description("Show the client's and the daemon's versions")
    .option("-o, --output <format>", "json or yaml")
    .addHelpText(
      "after",
      `
Examples:
  berth version
  berth version -o json | jq -r .server.runtimeVersion`,
    )
    .action(async (opts: { output?: string }, cmd: Command) => {
      const format = parseFormat(opts.output);
      const ctx = ctxOf(cmd);
      const client = { version: CLIENT_VERSION, node: process.version, os: process.platform, arch: process.arch };
      let server: Record<string, string> | undefined;
      let failure: unknown;
      try {
        const v = await ctx.c.rt.version({ version: "v1" }, { timeoutMs: 10_000 });
        server = {
          runtimeName: v.runtimeName,
          runtimeVersion: v.runtimeVersion,
          runtimeApiVersion: v.runtimeApiVersion,
          address: ctx.address,
        };
      } catch (err) {
        failure = err;
      }
      if (format !== "table") {
        process.stdout.write(structured({ client, server }, format) + "\n");
      } else {
        process.stdout.write(
          `Client:\n Version:     ${client.version}\n Node:        ${client.node}\n OS/Arch:     ${client.os}/${client.arch}\n`,
        );
        if (server) {
          process.stdout.write(
            `\nServer:\n Runtime:     ${server.runtimeName}\n Version:     ${server.runtimeVersion}\n CRI API:     ${server.runtimeApiVersion}\n Address:     ${server.address}\n`,
          );
        }
      }
      if (failure) throw failure;
    });

  program
    .command("info")
    .description("Show the daemon's configuration, runtimes, conditions and storage usage")
    .option("-o, --output <format>", "json or yaml")
    .addHelpText(
      "after",
      `
Examples:
  berth info
  berth info -o json | jq .snapshots`,
    )
    .action(async (opts: { output?: string }, cmd: Command) => {
      const format = parseFormat(opts.output);
      const { c } = ctxOf(cmd);
      const [info, status, pods, ctrs] = await Promise.all([
        optional(() => berthInfo(c)),
        c.rt.status({ verbose: false }),
        optional(() => c.rt.listPodSandbox({})),
        optional(() => c.rt.listContainers({})),
      ]);
      const running = ctrs?.containers.filter((x) => x.state === ContainerState.CONTAINER_RUNNING).length;
      if (format !== "table") {
        process.stdout.write(
          structured(
            {
              ...(info ? (plain(info) as object) : {}),
              conditions: status.status?.conditions ?? [],
              pods: pods?.items.length,
              containers: ctrs?.containers.length,
              containersRunning: running,
            },
            format,
          ) + "\n",
        );
        return;
      }
      const lines: string[] = [];
      const kv = (k: string, v: string | number | undefined) =>
        v !== undefined && v !== "" && lines.push(` ${(k + ":").padEnd(18)}${v}`);
      lines.push(bold("Server:"));
      if (info) {
        kv("Version", info.version);
        const up =
          info.startedAt > 0n
            ? `, up ${humanDuration(Math.floor((Date.now() - Number(info.startedAt / 1_000_000n)) / 1000))}`
            : "";
        kv("Pid", `${info.pid}${up}`);
        kv("Socket", info.address);
        kv("Root", info.root);
        kv("State", info.state);
        kv("Log level", info.logLevel);
        kv("Cgroup driver", info.cgroupDriver);
        kv("Runtimes", info.runtimes.map((r) => `${r.name}${r.default ? " (default)" : ""}`).join(", "));
        kv("Snapshotter", info.snapshotter);
        kv("Sandbox image", info.sandboxImage || "built-in pause");
        kv("Registry config", info.registryConfigPath);
        kv("CNI", `${info.cniConfDir} (plugins in ${info.cniBinDir})`);
      } else {
        lines.push(" (this berthd does not serve berth.v1.Berth/Info; only CRI facts below)");
      }
      for (const cond of status.status?.conditions ?? []) {
        kv(
          cond.type,
          cond.status ? green("true") : `${red("false")}${cond.reason ? ` (${cond.reason}: ${cond.message})` : ""}`,
        );
      }
      kv("Pods", pods?.items.length ?? "n/a");
      kv("Containers", ctrs ? `${ctrs.containers.length} (${running} running)` : "n/a");
      if (info) {
        kv("Images", Number(info.images));
        if (info.content)
          kv(
            "Content store",
            `${humanSize(info.content.usedBytes)} in ${info.content.inodesUsed} files (${info.content.path})`,
          );
        if (info.snapshots)
          kv(
            "Snapshots",
            `${humanSize(info.snapshots.usedBytes)} in ${info.snapshots.inodesUsed} inodes (${info.snapshots.path})`,
          );
      }
      process.stdout.write(lines.join("\n") + "\n");
    });

  program
    .command("completion")
    .description("Print a shell completion script (bash or zsh)")
    .argument("<shell>", "bash or zsh")
    .addHelpText(
      "after",
      `
Examples:
  source <(berth completion bash)          # this bash session
  berth completion bash > /etc/bash_completion.d/berth
  berth completion zsh > "\${fpath[1]}/_berth"   # then: autoload -U compinit && compinit`,
    )
    .action((shell: string) => {
      if (shell === "bash") process.stdout.write(bashCompletion(program));
      else if (shell === "zsh") process.stdout.write(zshCompletion(program));
      else throw new CliError(`no completion for ${JSON.stringify(shell)}`, "choose bash or zsh", EXIT_USAGE);
    });

  // Hidden: names for the completion scripts. Quiet on every error (no daemon: no names).
  program
    .command("__names", { hidden: true })
    .argument("<kind>", "containers, pods or images")
    .action(async (kind: string, _opts: unknown, cmd: Command) => {
      try {
        const { c } = ctxOf(cmd);
        let names: string[] = [];
        if (kind === "containers")
          names = (await c.rt.listContainers({})).containers.map((x) => x.metadata?.name ?? x.id);
        else if (kind === "pods") names = (await c.rt.listPodSandbox({})).items.map((x) => x.metadata?.name ?? x.id);
        else if (kind === "images") names = (await c.img.listImages({})).images.flatMap((x) => x.repoTags);
        process.stdout.write(names.join("\n") + (names.length ? "\n" : ""));
      } catch (err) {
        void err; // no daemon, no names: completion simply offers none
      }
    });
}
