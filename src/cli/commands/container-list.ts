// berth ps and berth pods: listing containers and pod sandboxes.
import type { Command } from "commander";
import {
  Container as ContainerMsg,
  PodSandbox as PodSandboxMsg,
  ContainerState,
  type ContainerStatus,
} from "../../gen/cri/runtime/v1/api.js";
import type { Clients } from "../client.js";
import { ctxOf } from "../context.js";
import { ago, emit, parseFormat, shortId } from "../output.js";
import { findPod } from "../resolve.js";
import { imageOf, podStateName, statusText } from "../state.js";

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

/** ps, pods. */
export function registerListCommands(program: Command): void {
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
}
