// What the pod sandbox operations (one file per CRI RPC in this folder) work over: the status
// store, the task runtime, the network, bundles, and the container operations a pod's stop and
// removal run for its containers. The composition for berthd is in ../pod-runtime.ts.
import type { ContainerEventResponse } from "../../gen/cri/runtime/v1/api.js";
import type { NetworkManager } from "../../network/index.js";
import type { CgroupDriver } from "../../oci/index.js";
import type { HandlerFeatures } from "../../oci/runtime-features.js";
import type { Logger } from "../../util/log.js";
import type { Bundles } from "../bundle.js";
import type { ContainerDeps } from "../container/deps.js";
import type { KeyedLock } from "../context.js";
import type { RetryScheduler } from "../retry.js";
import type { SandboxStore } from "../store/index.js";
import type { TaskRuntime } from "../../runtime/index.js";
import type { NriHooks } from "../../nri/hooks.js";

/** The configured runtime handlers (runtime classes) by name. */
export interface RuntimeClassLookup {
  get(name: string | undefined): { name: string };
  names(): string[];
}

export interface SandboxDeps {
  store: SandboxStore;
  /** A pod's stop and removal stop and remove its containers. */
  containers: ContainerDeps;
  runtime: TaskRuntime;
  network: Pick<NetworkManager, "setupPod" | "teardownPod">;
  runtimeClasses: RuntimeClassLookup;
  bundles: Bundles;
  events: { publish(e: ContainerEventResponse): void };
  /** Stop, remove and exit handling of one pod never overlap. */
  lock: KeyedLock;
  retries: RetryScheduler;
  log: Logger;
  cgroupDriver: CgroupDriver;
  /** The shared read-only sandbox rootfs holding /pause. */
  sandboxRootfs: string;
  /** What each runtime handler can do (probed at start): a pod asking for more is refused. */
  handlerFeatures?: Record<string, HandlerFeatures>;
  /** NRI plugins' hooks; absent means NRI is off. */
  nri?: NriHooks;
}
