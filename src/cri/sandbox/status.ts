// PodSandboxStatus (containerd's sandbox_status.go): the pod's state as the status store keeps
// it, with no shim round trip (kubelet polls it). Verbose status asks the shim for the pid.
import {
  NamespaceMode,
  PodSandboxConfig,
  PodSandboxState,
  type PodSandboxStatus,
} from "../../gen/cri/runtime/v1/api.js";
import { CRI_NAMESPACE as NS } from "../context.js";
import { type SandboxEntry, sandboxView } from "../store/index.js";
import type { SandboxDeps } from "./deps.js";

export interface SandboxStatusResult {
  status: PodSandboxStatus;
  info: Record<string, string>;
}

/**
 * The status without verbose info (no shim round trip): the same object while the entry's
 * status, config and info are (the encoder keeps its bytes by the object, response-encoder.ts).
 */
export function sandboxStatusOf(e: SandboxEntry): PodSandboxStatus {
  const kept = e.statusMessage;
  if (kept && kept.status === e.status && kept.config === e.config && kept.info === e.info) return kept.message;
  const message = buildStatus(e);
  e.statusMessage = { status: e.status, config: e.config, info: e.info, message };
  return message;
}

function buildStatus(e: SandboxEntry): PodSandboxStatus {
  const config = e.config;
  const live = sandboxView(e.status);
  const ns = config.linux?.securityContext?.namespaceOptions;
  const ready = e.status.phase === "ready";
  return {
    id: e.id,
    metadata: config.metadata,
    state: live.state,
    createdAt: e.info.createdAt,
    // containerd reports the IP until the network is torn down (StopPodSandbox), even for a
    // pod whose sandbox process exited, and none after.
    network: {
      ip: ready ? (e.info.ips[0] ?? "") : "",
      additionalIps: ready ? e.info.ips.slice(1).map((ip) => ({ ip })) : [],
    },
    linux: {
      namespaces: {
        options: {
          network: ns?.network ?? NamespaceMode.POD,
          pid: ns?.pid ?? NamespaceMode.POD,
          ipc: ns?.ipc ?? NamespaceMode.POD,
          targetId: ns?.targetId ?? "",
          usernsOptions: ns?.usernsOptions,
        },
      },
    },
    labels: config.labels,
    annotations: config.annotations,
    runtimeHandler: e.info.runtimeHandler,
  };
}

export async function sandboxStatusVerbose(
  d: SandboxDeps,
  e: SandboxEntry,
  verbose: boolean,
): Promise<SandboxStatusResult> {
  const status = sandboxStatusOf(e);
  const info: Record<string, string> = {};
  if (verbose) {
    const live = sandboxView(e.status);
    const rec = d.runtime.record(NS, e.id);
    // Verbose status is not polled: the pid (and the process status) come from the shim.
    const s =
      live.state === PodSandboxState.SANDBOX_READY ? await d.runtime.state(NS, e.id).catch(() => undefined) : undefined;
    info.info = JSON.stringify({
      pid: s?.pid ?? 0,
      processStatus: s?.status ?? live.status,
      phase: e.status.phase,
      netNamespacePath: e.info.netnsPath,
      podDir: e.info.podDir,
      runtimeHandler: e.info.runtimeHandler,
      runtimeType: rec?.runtimeType ?? "",
      shimAddress: rec?.address ?? "",
      config: PodSandboxConfig.toJSON(e.config),
    });
  }
  return { status, info };
}

/** The status of a pod by exact id, or undefined (for events). */
export function sandboxStatusById(d: Pick<SandboxDeps, "store">, id: string): PodSandboxStatus | undefined {
  const e = d.store.get(id);
  return e ? sandboxStatusOf(e) : undefined;
}
