// Running a configuration list for a pod: ADD through the plugins in order (each gets the
// previous result), DEL in reverse, CHECK; the stdin each plugin gets and the checks on what
// it answers.

import { compareVersions, isObject } from "./config.js";
import { CNI_ERR_UNKNOWN_CONTAINER, CniPluginError } from "./errors.js";
import type { CniExec } from "./invoke.js";
import type { CniCommand, CniNetworkConfigList, CniPluginConf, CniResult, RuntimeConf } from "./types.js";

function cniArgs(args: [string, string][]): string {
  return args.map(([k, v]) => `${k}=${v}`).join(";");
}

function envFor(command: CniCommand, rt: RuntimeConf): Record<string, string> {
  return {
    CNI_COMMAND: command,
    CNI_CONTAINERID: rt.containerId,
    CNI_NETNS: rt.netns,
    CNI_IFNAME: rt.ifName,
    CNI_ARGS: cniArgs(rt.args),
  };
}

/** The stdin of one plugin: its config with the list's name and version, capabilities filled in. */
export function pluginStdin(
  list: CniNetworkConfigList,
  plugin: CniPluginConf,
  rt: RuntimeConf,
  prevResult?: CniResult,
): string {
  const conf: Record<string, unknown> = { ...plugin, name: list.name, cniVersion: list.cniVersion };
  const runtimeConfig: Record<string, unknown> = isObject(plugin.runtimeConfig) ? { ...plugin.runtimeConfig } : {};
  for (const [cap, on] of Object.entries(plugin.capabilities ?? {})) {
    const value = rt.capabilityArgs[cap];
    if (on && value !== undefined) runtimeConfig[cap] = value;
  }
  if (Object.keys(runtimeConfig).length > 0) conf.runtimeConfig = runtimeConfig;
  else delete conf.runtimeConfig;
  if (prevResult) conf.prevResult = prevResult;
  else delete conf.prevResult;
  return JSON.stringify(conf);
}

function checkResult(list: CniNetworkConfigList, plugin: string, out: unknown): CniResult {
  if (!isObject(out)) {
    throw new CniPluginError(plugin, "ADD", list.name, 0, "returned no result", "");
  }
  const res = out as CniResult;
  if (res.ips !== undefined && !Array.isArray(res.ips)) {
    throw new CniPluginError(
      plugin,
      "ADD",
      list.name,
      0,
      "result has a non-array ips",
      JSON.stringify(out).slice(0, 2000),
    );
  }
  if (res.interfaces !== undefined && !Array.isArray(res.interfaces)) {
    throw new CniPluginError(
      plugin,
      "ADD",
      list.name,
      0,
      "result has a non-array interfaces",
      JSON.stringify(out).slice(0, 2000),
    );
  }
  return res;
}

/**
 * ADD: runs the plugins in order, each getting the previous one's result as prevResult;
 * the last result is the list's. `onPluginDone` sees each plugin's index as it succeeds.
 * On failure nothing is undone here: the caller runs delNetworkList (the SPEC asks for a
 * DEL of the whole list, also of plugins that never ran).
 */
export async function addNetworkList(exec: CniExec, list: CniNetworkConfigList, rt: RuntimeConf): Promise<CniResult> {
  let prev: CniResult | undefined;
  for (const plugin of list.plugins) {
    const out = await exec.run({
      plugin: plugin.type,
      command: "ADD",
      network: list.name,
      env: envFor("ADD", rt),
      stdin: pluginStdin(list, plugin, rt, prev),
    });
    prev = checkResult(list, plugin.type, out);
  }
  return prev as CniResult;
}

/** True for DEL failures that only say the thing to delete is already gone. */
export function isAlreadyGone(err: unknown): boolean {
  if (!(err instanceof CniPluginError)) return false;
  if (err.cniCode === CNI_ERR_UNKNOWN_CONTAINER) return true;
  return /no such file or directory|not found|does not exist|no such device|no such process/i.test(
    `${err.cniMsg} ${err.details}`,
  );
}

/**
 * DEL: runs the plugins in reverse order with the ADD result as prevResult (when known).
 * Plugins must tolerate missing resources; failures that only say "already gone" are
 * treated as success so a repeated teardown does not get stuck.
 */
export async function delNetworkList(
  exec: CniExec,
  list: CniNetworkConfigList,
  rt: RuntimeConf,
  prevResult?: CniResult,
): Promise<void> {
  for (const plugin of [...list.plugins].reverse()) {
    try {
      await exec.run({
        plugin: plugin.type,
        command: "DEL",
        network: list.name,
        env: envFor("DEL", rt),
        stdin: pluginStdin(list, plugin, rt, prevResult),
      });
    } catch (err) {
      if (!isAlreadyGone(err)) throw err;
    }
  }
}

/**
 * CHECK: asks every plugin whether the container's networking is still as ADD left it.
 * Skipped (resolves false) for lists older than 0.4.0 or with disableCheck.
 */
export async function checkNetworkList(
  exec: CniExec,
  list: CniNetworkConfigList,
  rt: RuntimeConf,
  prevResult: CniResult,
): Promise<boolean> {
  if (list.disableCheck || compareVersions(list.cniVersion, "0.4.0") < 0) return false;
  for (const plugin of list.plugins) {
    await exec.run({
      plugin: plugin.type,
      command: "CHECK",
      network: list.name,
      env: envFor("CHECK", rt),
      stdin: pluginStdin(list, plugin, rt, prevResult),
    });
  }
  return true;
}
