// Container and pod commands: ps, pods, stop, rm, inspect, logs, stats, events, exec.
import type { Command } from "commander";
import { registerExecCommand } from "./container-exec.js";
import { registerInspectCommand } from "./container-inspect.js";
import { registerLifecycleCommands } from "./container-lifecycle.js";
import { registerListCommands } from "./container-list.js";
import { registerLogsCommand } from "./container-logs.js";
import { registerMonitorCommands } from "./container-monitor.js";

export { removeContainer, removeRunPod } from "./container-lifecycle.js";
export { printLogs } from "./container-logs.js";

/** Registers the commands in the order `berth --help` lists them. */
export function registerContainerCommands(program: Command): void {
  registerListCommands(program);
  registerLifecycleCommands(program);
  registerInspectCommand(program);
  registerLogsCommand(program);
  registerMonitorCommands(program);
  registerExecCommand(program);
}
