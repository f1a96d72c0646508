// The berth command line: a client of berthd's socket (CRI RuntimeService/ImageService and
// berth.v1.Berth). This file builds the command tree and turns every failure into a message
// that says what to do, with docker's exit codes (see errors.ts).
import { Command, CommanderError } from "commander";
import { registerContainerCommands } from "./commands/containers.js";
import { registerImageCommands } from "./commands/images.js";
import { registerRunCommand } from "./commands/run.js";
import { registerSystemCommands } from "./commands/system.js";
import { registerTraceCommand } from "./commands/trace.js";
import { DEFAULT_ADDRESS } from "./client.js";
import { currentCtx } from "./context.js";
import { CliError, EXIT_FAILURE, EXIT_RUN_FAILED, EXIT_USAGE, explain } from "./errors.js";
import { redErr, yellowErr } from "./output.js";
import { CLIENT_VERSION } from "./version.js";

export function buildProgram(): Command {
  const program = new Command("berth");
  program
    .description("Run and inspect containers, pods and images on a berth node")
    .version(CLIENT_VERSION, "-V, --version", "print the client version")
    .option("-a, --address <socket>", `berthd socket (env BERTH_ADDRESS, default ${DEFAULT_ADDRESS})`)
    .enablePositionalOptions()
    .showSuggestionAfterError()
    .configureHelp({ sortSubcommands: false })
    .addHelpText(
      "after",
      `
Examples:
  berth pull busybox
  berth run --rm busybox echo hello
  berth run -d --name web -p 8080:80 nginx && berth logs -f web
  berth -a /tmp/berth.sock ps -a

Run 'berth COMMAND --help' for more on a command.`,
    );
  registerImageCommands(program);
  registerRunCommand(program);
  registerContainerCommands(program);
  registerSystemCommands(program);
  registerTraceCommand(program);
  for (const cmd of [program, ...program.commands]) {
    // Commander prints its own usage errors; we only choose the exit code (docker run: 125).
    cmd.exitOverride();
    cmd.configureOutput({ outputError: (s, write) => write(redErr(s)) });
  }
  return program;
}

function commandName(argv: string[]): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "-a" || a === "--address") i++;
    else if (!a.startsWith("-")) return a;
  }
  return undefined;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  const isRun = commandName(argv) === "run";
  try {
    await program.parseAsync(argv, { from: "user" });
    return typeof process.exitCode === "number" ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.exitCode === 0) return 0; // --help, --version
      return isRun ? EXIT_RUN_FAILED : EXIT_USAGE;
    }
    const e = explain(err, currentCtx()?.address ?? DEFAULT_ADDRESS);
    if (e instanceof CliError) {
      process.stderr.write(`${redErr("berth:")} ${e.message}\n`);
      if (e.hint) process.stderr.write(`  ${yellowErr("hint:")} ${e.hint}\n`);
      if (isRun && e.exitCode === EXIT_FAILURE) return EXIT_RUN_FAILED;
      return e.exitCode;
    }
    process.stderr.write(`${redErr("berth:")} ${e instanceof Error ? e.message : String(e)}\n`);
    return isRun ? EXIT_RUN_FAILED : EXIT_FAILURE;
  } finally {
    currentCtx()?.close();
  }
}

// stdout closed early (berth images | head): not an error worth a stack trace.
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code === "EPIPE") process.exit(0);
});

const code = await main(process.argv.slice(2));
// Exit now: an attached stdin or a gRPC channel must not keep the process alive. Writes to
// pipes and terminals are synchronous on Linux, so no output is lost.
process.exit(code);
