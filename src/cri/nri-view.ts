// How pods and containers look to NRI plugins (containerd's internal/cri/nri pod and container
// adapters): built from the status store, in NRI's message types, for the hooks the CRI
// operations call (../nri/hooks.ts) and for the snapshot a joining plugin is synchronized with.
import { ContainerState as CriState } from "../gen/cri/runtime/v1/api.js";
// Types only: the generated NRI module (13k lines, about 0.8 MiB of heap) is loaded with the
// adaptation (../nri/adaptation.ts), which berthd imports only when NRI is enabled (issue 15).
import type { Container, ContainerState, PodSandbox } from "../gen/nri/api.js";
import { NO_NRI, type NriHooks, type NriState } from "../nri/hooks.js";
import { podCgroupParent, type CgroupDriver } from "../oci/index.js";
import type { Logger } from "../util/log.js";
import {
  type ContainerEntry,
  type ContainerStore,
  type SandboxEntry,
  type SandboxStore,
  containerView,
} from "./store/index.js";

/** The hooks of `d`, or the no-op ones when NRI is not wired in (unit tests, NRI disabled). */
export function nriOf(d: { nri?: NriHooks }): NriHooks {
  return d.nri ?? NO_NRI;
}

export function nriPod(e: SandboxEntry, driver?: CgroupDriver, pid = 0): PodSandbox {
  const config = e.config;
  return {
    id: e.id,
    name: e.info.name,
    uid: e.info.uid,
    namespace: e.info.namespace,
    labels: { ...config.labels },
    annotations: { ...config.annotations },
    runtimeHandler: e.info.runtimeHandler,
    linux: {
      podOverhead: undefined,
      podResources: undefined,
      cgroupParent: podCgroupParent(config.linux?.cgroupParent, e.id, driver),
      cgroupsPath: "",
      namespaces: e.info.netnsPath ? [{ type: "network", path: e.info.netnsPath }] : [],
      resources: undefined,
    },
    pid,
    ips: [...e.info.ips],
  };
}

/** A pod NRI must hear of though berth no longer has it (e.g. its record went first). */
export function nriPodStub(id: string): PodSandbox {
  return {
    id,
    name: "",
    uid: "",
    namespace: "",
    labels: {},
    annotations: {},
    runtimeHandler: "",
    linux: undefined,
    pid: 0,
    ips: [],
  };
}

/** NRI's ContainerState numbers (nri api.proto), written out so that no NRI value is imported. */
export const NRI_STATE = {
  UNKNOWN: 0,
  CREATED: 1,
  RUNNING: 3,
  STOPPED: 4,
} as const satisfies Record<string, ContainerState>;

const stateOf: Record<number, ContainerState> = {
  [CriState.CONTAINER_CREATED]: NRI_STATE.CREATED,
  [CriState.CONTAINER_RUNNING]: NRI_STATE.RUNNING,
  [CriState.CONTAINER_EXITED]: NRI_STATE.STOPPED,
};

/** A container as the store knows it (no spec read): identity, command, state and exit. */
export function nriContainer(e: ContainerEntry): Container {
  const config = e.config;
  const view = containerView(e.status);
  return {
    id: e.id,
    podSandboxId: e.info.sandboxId,
    name: e.info.name,
    state: e.status.phase === "creating" ? NRI_STATE.UNKNOWN : (stateOf[view.state] ?? NRI_STATE.UNKNOWN),
    labels: { ...config.labels },
    annotations: { ...config.annotations },
    args: [...config.command, ...config.args],
    env: config.envs.map((kv) => `${kv.key}=${kv.value}`),
    mounts: [],
    hooks: undefined,
    linux: undefined,
    pid: 0,
    rlimits: [],
    createdAt: e.info.createdAt,
    startedAt: e.status.startedAt,
    finishedAt: view.finishedAt,
    exitCode: view.exitCode,
    statusReason: view.reason,
    statusMessage: view.message,
    CDIDevices: config.CDIDevices.map((d) => ({ name: d.name })),
    user: undefined,
    image: { name: e.info.imageRef, digest: "", configDigest: e.info.imageId },
  };
}

/** What a joining plugin is synchronized with: the pods and containers not being created. */
export function nriState(pods: SandboxStore, containers: ContainerStore, driver?: CgroupDriver): NriState {
  return {
    pods: () =>
      pods
        .list()
        .filter((e) => e.status.phase !== "creating")
        .map((e) => nriPod(e, driver)),
    containers: () =>
      containers
        .list()
        .filter((e) => e.status.phase !== "creating")
        .map(nriContainer),
  };
}

interface NotifyDeps {
  nri?: NriHooks;
  store: ContainerStore;
  sandboxes: SandboxStore;
  cgroupDriver?: CgroupDriver;
  log: Logger;
}

/**
 * Tells the plugins something happened to container `id` (post-create, post-start, stop,
 * remove): a notification, so nothing a plugin does fails the CRI call; failures are logged.
 */
export async function notifyNri(
  d: NotifyDeps,
  id: string,
  fn: (nri: NriHooks, pod: PodSandbox, container: Container) => Promise<void>,
): Promise<void> {
  const nri = nriOf(d);
  if (!nri.enabled) return;
  const e = d.store.get(id);
  if (!e) return;
  const pod = d.sandboxes.get(e.info.sandboxId);
  try {
    await fn(nri, pod ? nriPod(pod, d.cgroupDriver) : nriPodStub(e.info.sandboxId), nriContainer(e));
  } catch (err) {
    d.log.warn({ err, container: id }, "NRI notification failed");
  }
}
