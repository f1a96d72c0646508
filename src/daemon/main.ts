// berthd's command line. `berthd [flags]` runs the daemon; `berthd config default|dump`
// prints configuration; `berthd uninstall` removes what berthd put on the host outside its
// own directories. Flags override the config file, which overrides the defaults.

import { Command } from "commander";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { createLogger, type Logger } from "../util/log.js";
import { LOG_LEVELS } from "./config-schema.js";
import {
  applyOverrides,
  ConfigError,
  DEFAULT_CONFIG_PATH,
  defaultConfig,
  formatProblem,
  loadConfigFile,
  renderConfig,
  type BerthConfig,
  type Override,
} from "./config.js";
import { DaemonConflictError, isLiveBerthd } from "./pidfile.js";
import { Daemon, PID_FILE } from "./server.js";
import { BERTH_VERSION } from "../util/version.js";
import { startIdleTrim } from "../util/idle-trim.js";
import { mallocTrim } from "../sys/index.js";

interface GlobalFlags {
  config?: string;
  address?: string;
  root?: string;
  state?: string;
  logLevel?: string;
}

/** Refuses to run: prints one `berthd: ...` line per problem (then any detail, indented) and exits non-zero. */
function refuse(message: string, detail = ""): never {
  for (const line of message.split("\n")) process.stderr.write(`berthd: ${line}\n`);
  if (detail) process.stderr.write(detail.replace(/^/gm, "    ") + "\n");
  process.exit(1);
}

/** Defaults, then the config file, then flags; exits with the problems if any is invalid. */
function effectiveConfig(flags: GlobalFlags): BerthConfig {
  try {
    const { config } = loadConfigFile(flags.config === undefined ? undefined : resolve(flags.config));
    // Paths on the command line are relative to the working directory, as users expect.
    const overrides: Override[] = [];
    if (flags.address !== undefined)
      overrides.push({ key: "grpc.address", value: resolve(flags.address), flag: "--address" });
    if (flags.root !== undefined) overrides.push({ key: "root", value: resolve(flags.root), flag: "--root" });
    if (flags.state !== undefined) overrides.push({ key: "state", value: resolve(flags.state), flag: "--state" });
    if (flags.logLevel !== undefined) overrides.push({ key: "log.level", value: flags.logLevel, flag: "--log-level" });
    return applyOverrides(config, overrides);
  } catch (err) {
    if (err instanceof ConfigError) {
      refuse(
        ["invalid configuration", ...err.problems.map((p) => formatProblem(err.source, p))].join("\n"),
        err.detail,
      );
    }
    throw err;
  }
}

async function serve(flags: GlobalFlags): Promise<void> {
  const config = effectiveConfig(flags);
  const log = createLogger({ level: config.log.level, format: config.log.format, base: { pid: process.pid } });

  let daemon: Daemon;
  try {
    daemon = await Daemon.start(config, log);
  } catch (err) {
    if (err instanceof DaemonConflictError) refuse(err.message);
    log.fatal({ err }, "berthd failed to start");
    refuse(`failed to start: ${(err as Error).message}`);
  }

  // Memory a burst of work left behind goes back once berthd is quiet (src/util/idle-trim.ts).
  startIdleTrim({
    mallocTrim,
    onTrim: (t) =>
      log.debug(
        { heapBefore: t.beforeBytes, heapAfter: t.afterBytes, ms: Math.round(t.ms) },
        "idle: heap collected and malloc trimmed",
      ),
  });

  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    if (++signals > 1) {
      log.warn({ signal }, "second signal: exiting without waiting for in-flight calls");
      process.exit(1);
    }
    daemon.stop(signal).then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, "error during shutdown");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
  installCrashHandlers(daemon, log);
}

/**
 * Removes the host state berthd installs outside its root and state dirs: the outbound NAT
 * (masquerade) rule of its default pod network. Refused while berthd runs: its pods would lose
 * their way out.
 */
async function uninstall(flags: GlobalFlags): Promise<void> {
  const config = effectiveConfig(flags);
  let pid = NaN;
  try {
    pid = parseInt(readFileSync(join(config.state, PID_FILE), "utf8").trim(), 10);
  } catch {
    // no pid file: not running
  }
  if (isLiveBerthd(pid)) refuse(`berthd (pid ${pid}) is running on ${config.state}: stop it first`);
  const { NetworkManager } = await import("../network/index.js");
  const network = new NetworkManager({
    stateDir: join(config.root, "network"),
    netnsDir: join(config.state, "netns"),
    confDir: config.cni.conf_dir,
    binDirs: [config.cni.bin_dir],
  });
  const removed = await network.uninstall();
  for (const r of removed) process.stdout.write(`removed the masquerade rule of pod subnet ${r.subnet} (nat table)\n`);
  if (removed.length === 0) process.stdout.write("nothing to remove\n");
}

/** A bug that escapes every handler still releases the socket and pid file before exiting. */
function installCrashHandlers(daemon: Daemon, log: Logger): void {
  const crash = (err: unknown) => {
    log.fatal({ err }, "berthd crashed");
    const timer = setTimeout(() => process.exit(1), 2000);
    timer.unref();
    daemon.stop("crash").finally(() => process.exit(1));
  };
  process.on("uncaughtException", crash);
  process.on("unhandledRejection", crash);
}

export function buildProgram(): Command {
  const program = new Command("berthd")
    .description("berth container runtime daemon: serves the Kubernetes CRI (runtime.v1) on a unix socket")
    .version(`berthd ${BERTH_VERSION}`, "-v, --version", "print the version and exit")
    .option("-c, --config <file>", `config file (default: ${DEFAULT_CONFIG_PATH} if it exists)`)
    .option("-a, --address <socket>", "CRI socket path (overrides grpc.address)")
    .option("--root <dir>", "persistent data directory (overrides root)")
    .option("--state <dir>", "runtime state directory (overrides state)")
    .option("-l, --log-level <level>", `log level: ${LOG_LEVELS.join(", ")} (overrides log.level)`)
    .showHelpAfterError()
    .action(async (flags: GlobalFlags) => serve(flags));

  const config = program.command("config").description("print configuration");
  config
    .command("default")
    .description("print the default configuration as TOML (a valid --config file)")
    .action(() => {
      process.stdout.write(renderConfig(defaultConfig(), { comments: true }));
    });
  config
    .command("dump")
    .description("print the effective configuration: defaults, then the config file, then flags")
    .action((_opts, cmd: Command) => {
      process.stdout.write(renderConfig(effectiveConfig(cmd.optsWithGlobals<GlobalFlags>())));
    });
  program
    .command("uninstall")
    .description(
      "remove what berthd installed on the host outside its root and state: the masquerade rule of its default pod network (stop berthd first)",
    )
    .action(async (_opts, cmd: Command) => uninstall(cmd.optsWithGlobals<GlobalFlags>()));
  return program;
}

await buildProgram().parseAsync(process.argv);
