// The seam between the CRI operations and NRI: what RunPodSandbox, CreateContainer, ... call
// at their NRI points, in NRI's own message types. The CRI code knows this interface only, not
// the socket, the multiplexer or the plugins behind it (adaptation.ts implements it), and runs
// with NO_NRI when NRI is disabled.
//
// Which hooks can fail the CRI call follows containerd: RunPodSandbox, CreateContainer,
// StartContainer and UpdateContainer do (a plugin's error fails the call, and the operation's
// rollback runs); the others are notifications whose plugin errors are logged.
import type { Container, Event, PodSandbox } from "../gen/nri/api.js";
import type { Resources, Spec } from "../oci/spec.js";
import type { AdjustmentRest } from "./adjust.js";

export interface NriHooks {
  /** False for NO_NRI: callers may skip building the NRI view of a pod or container. */
  readonly enabled: boolean;
  /**
   * Runs a pod or container creation so that no plugin is synchronized in the middle of it
   * (sync-lock.ts): the new object reaches a joining plugin in its snapshot or as an event.
   */
  blockSync<T>(fn: () => Promise<T>): Promise<T>;
  /**
   * Whether a plugin hears of `event` now: a running plugin subscribed to it, or one still
   * joining (its subscriptions are not settled). Called inside blockSync, the answer holds
   * until blockSync's function returns (no plugin joins meanwhile).
   */
  subscribed(event: Event): boolean;
  runPodSandbox(pod: PodSandbox): Promise<void>;
  stopPodSandbox(pod: PodSandbox): Promise<void>;
  removePodSandbox(pod: PodSandbox): Promise<void>;
  /**
   * Plugins see the container as `spec` describes it and may adjust it: their adjustments are
   * applied to `spec` in place (throws when one cannot be). The CDI devices they add are
   * returned for the caller to inject.
   */
  createContainer(pod: PodSandbox, container: Container, spec: Spec): Promise<AdjustmentRest>;
  postCreateContainer(pod: PodSandbox, container: Container): Promise<void>;
  startContainer(pod: PodSandbox, container: Container): Promise<void>;
  postStartContainer(pod: PodSandbox, container: Container): Promise<void>;
  /** Plugins see the new resources and may change them: their changes are applied to `resources` in place. */
  updateContainer(pod: PodSandbox, container: Container, resources: Resources): Promise<void>;
  postUpdateContainer(pod: PodSandbox, container: Container): Promise<void>;
  stopContainer(pod: PodSandbox, container: Container): Promise<void>;
  removeContainer(pod: PodSandbox, container: Container): Promise<void>;
}

/** What a joining plugin is synchronized with: every pod and container berthd has. */
export interface NriState {
  pods(): PodSandbox[];
  containers(): Container[];
}

/** NRI disabled: every hook does nothing. */
export const NO_NRI: NriHooks = {
  enabled: false,
  blockSync: (fn) => fn(),
  subscribed: () => false,
  runPodSandbox: async () => {},
  stopPodSandbox: async () => {},
  removePodSandbox: async () => {},
  createContainer: async () => ({ cdiDevices: [] }),
  postCreateContainer: async () => {},
  startContainer: async () => {},
  postStartContainer: async () => {},
  updateContainer: async () => {},
  postUpdateContainer: async () => {},
  stopContainer: async () => {},
  removeContainer: async () => {},
};
