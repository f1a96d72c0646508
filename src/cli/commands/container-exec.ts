// berth exec: a command in a running container, through the streaming server.
import { status as Code } from "@grpc/grpc-js";
import type { Command } from "commander";
import { ContainerState } from "../../gen/cri/runtime/v1/api.js";
import { ctxOf } from "../context.js";
import { CliError, isCode } from "../errors.js";
import { shortId } from "../output.js";
import { streamSession } from "../remotecommand.js";
import { findContainer } from "../resolve.js";
import { stateName } from "../state.js";

/** exec. */
export function registerExecCommand(program: Command): void {
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
