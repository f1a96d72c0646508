// The bootstrap protocol of containerd 2.3+ on the shim's side of `start`: containerd writes
// a BootstrapParams protobuf to stdin (containerd 1.6 wrote the runtime options Any, or
// nothing) and reads the answer from stdout. berth's shim answers each caller in its own
// form: a BootstrapResult protobuf to a bootstrap caller, the plain address to an older one.
import { BootstrapParams, BootstrapResult } from "../gen/containerd/runtime/bootstrap/v1/bootstrap.js";
import type { ShimFlags } from "./flags.js";

/** The task API berth's shim serves: containerd.task.v2.Task. */
export const TASK_API_VERSION = 2;

/**
 * The BootstrapParams on stdin, or undefined when the input is not one (empty, or the runtime
 * options Any older callers send). An Any decodes as BootstrapParams too (its type URL lands in
 * instance_id, its value in namespace), so, as containerd's own shim library does, only params
 * naming this very task and namespace count.
 */
export function readBootstrapParams(input: Buffer, flags: ShimFlags): BootstrapParams | undefined {
  if (input.length === 0) return undefined;
  let params: BootstrapParams;
  try {
    params = BootstrapParams.decode(input);
  } catch {
    return undefined;
  }
  if (params.instanceId !== flags.id || params.namespace !== flags.namespace) return undefined;
  return params;
}

/**
 * The flags and environment the serving shim gets, with what the params say filled in. Their
 * socket_dir is not used: berth's shim keeps its socket beside its monitors' state under its
 * own root (BERTH_SHIM_SOCKET_DIR), where `delete`, which gets no params, finds them too.
 */
export function applyBootstrapParams(
  flags: ShimFlags,
  env: NodeJS.ProcessEnv,
  params: BootstrapParams | undefined,
): { flags: ShimFlags; env: NodeJS.ProcessEnv } {
  if (!params) return { flags, env };
  return {
    // -address names the caller and groups its tasks; the params say the same, and take over
    // once containerd stops passing the flag.
    flags: { ...flags, address: flags.address || params.containerdGrpcAddress },
    // Events go where the params say: containerd marks the TTRPC_ADDRESS variable for removal.
    env: params.containerdTtrpcAddress ? { ...env, TTRPC_ADDRESS: params.containerdTtrpcAddress } : env,
  };
}

/** What `start` prints: a BootstrapResult for a bootstrap caller, else the address as text. */
export function startAnswer(address: string, params: BootstrapParams | undefined): Buffer {
  if (!params) return Buffer.from(address);
  const result = BootstrapResult.fromPartial({ version: TASK_API_VERSION, address, protocol: "ttrpc" });
  return Buffer.from(BootstrapResult.encode(result).finish());
}
