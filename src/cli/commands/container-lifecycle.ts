// berth stop and berth rm, and the removal helpers `berth run` shares.
import type { Command } from "commander";
import { rmSync } from "node:fs";
import { ContainerState, type Container } from "../../gen/cri/runtime/v1/api.js";
import type { Clients } from "../client.js";
import { ctxOf } from "../context.js";
import { CliError, EXIT_USAGE } from "../errors.js";
import { shortId } from "../output.js";
import { findContainer } from "../resolve.js";
import { ANNOTATION_LOG_DIR, LABEL_RUN } from "../state.js";

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

/** stop, rm. */
export function registerLifecycleCommands(program: Command): void {
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
}
