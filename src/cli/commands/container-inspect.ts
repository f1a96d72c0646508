// berth inspect: the full CRI status of containers, pods or images.
import type { Command } from "commander";
import {
  ContainerStatus as ContainerStatusMsg,
  Image as ImageMsg,
  PodSandboxStatus as PodSandboxStatusMsg,
} from "../../gen/cri/runtime/v1/api.js";
import { ctxOf } from "../context.js";
import { CliError, EXIT_USAGE } from "../errors.js";
import { parseFormat, structured } from "../output.js";
import { findContainer, findImage, findPod } from "../resolve.js";

/** inspect. */
export function registerInspectCommand(program: Command): void {
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
}
