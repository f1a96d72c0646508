// CNI failures as typed errors (util/errors.ts): bad configuration, a missing plugin, a
// plugin's own error object, and a plugin that does not answer in time.

import { DeadlineExceededError, FailedPreconditionError, InternalError } from "../../util/errors.js";
import type { CniCommand } from "./types.js";

/** The network configuration (a file in conf_dir) is unusable. */
export class CniConfigError extends FailedPreconditionError {
  constructor(
    readonly file: string,
    problem: string,
  ) {
    super(`CNI network config ${file || "(built-in)"}: ${problem}`);
  }
}

/** A plugin named by a config is not in any CNI bin dir. */
export class CniPluginNotFoundError extends FailedPreconditionError {
  constructor(
    readonly plugin: string,
    readonly binDirs: string[],
  ) {
    super(`CNI plugin ${JSON.stringify(plugin)} not found in ${binDirs.join(":")}`);
  }
}

/** A plugin ran and failed: the SPEC's error object ({code, msg, details}) plus where it happened. */
export class CniPluginError extends InternalError {
  constructor(
    readonly plugin: string,
    readonly command: CniCommand,
    readonly network: string,
    /** the SPEC's well-known code (1-99) or a plugin-specific one (100+); 0 if the plugin printed no error object */
    readonly cniCode: number,
    readonly cniMsg: string,
    readonly details: string,
  ) {
    super(
      `CNI plugin ${plugin} ${command} failed for network ${JSON.stringify(network)}` +
        `${cniCode ? ` (code ${cniCode})` : ""}: ${cniMsg}${details ? `: ${details}` : ""}`,
    );
  }
}

/** A plugin ran past its time limit and was killed. */
export class CniPluginTimeoutError extends DeadlineExceededError {
  constructor(
    readonly plugin: string,
    readonly command: CniCommand,
    readonly timeoutMs: number,
  ) {
    super(`CNI plugin ${plugin} ${command} did not finish within ${timeoutMs} ms and was killed`);
  }
}

/** SPEC well-known error codes the runtime acts on. */
export const CNI_ERR_INCOMPATIBLE_VERSION = 1;
export const CNI_ERR_UNKNOWN_CONTAINER = 3;
export const CNI_ERR_TRY_AGAIN_LATER = 11;
