// What the pod and container services share: their dependencies, the on-disk layout under
// berthd's root and state directories, and the containerd namespace their tasks live in.
import { join } from "node:path";
import type { ImageService } from "../images/service.js";
import type { ContainerMetadata } from "../metadata/containers.js";
import type { PodMetadata } from "../metadata/pods.js";
import type { NetworkManager } from "../network/index.js";
import type { CgroupDriver } from "../oci/index.js";
import type { HandlerFeatures } from "../oci/runtime-features.js";
import type { RuntimeClasses, ShimManager } from "../runtime/index.js";
import type { Logger } from "../util/log.js";
import type { CriEvents } from "./events.js";
import type { NriHooks } from "../nri/hooks.js";

/** The containerd namespace of every CRI task (the one containerd's CRI plugin uses). */
export const CRI_NAMESPACE = "k8s.io";

export interface CriContext {
  pods: PodMetadata;
  containers: ContainerMetadata;
  images: ImageService;
  network: NetworkManager;
  shims: ShimManager;
  handlers: RuntimeClasses;
  events: CriEvents;
  log: Logger;
  /** berthd's state dir (bundles, fifos, pod files live below it). */
  stateDir: string;
  /** The shared read-only sandbox rootfs holding /pause. */
  sandboxRootfs: string;
  cgroupDriver: CgroupDriver;
  /** Longest CRI log record before a line is split into P records. */
  maxLogLineSize?: number;
  /** CDI spec directories, lowest priority first (default /etc/cdi, /var/run/cdi). */
  cdiSpecDirs?: string[];
  /** What each runtime handler can do (probed at start); a handler not here can do none of it. */
  handlerFeatures?: Record<string, HandlerFeatures>;
  /** NRI plugins' hooks (daemon/compose.ts builds them when [nri] enable is set). */
  nri?: NriHooks;
}

export const paths = {
  bundle: (ctx: CriContext, id: string) => join(ctx.stateDir, "bundles", id),
  podDir: (ctx: CriContext, id: string) => join(ctx.stateDir, "pods", id),
  ioRoot: (ctx: CriContext) => join(ctx.stateDir, "io"),
};

// One clock and one sleep for the whole code base (util/); re-exported for the CRI modules.
export { dateNs, nowNs } from "../util/clock.js";
export { sleep } from "../util/sleep.js";

/** Runs undo steps last-first, logging (not throwing) their failures: the original error matters. */
export async function runUndo(steps: (() => unknown)[], log: Logger, what: string): Promise<void> {
  for (const step of steps.reverse()) {
    try {
      await step();
    } catch (err) {
      log.warn({ err }, `cleanup after failed ${what}`);
    }
  }
}

/** True when every key=value of `selector` is among `labels`. */
/** The info map of a status read that is not verbose (shared: it is only ever encoded). */
export const NO_INFO: Record<string, string> = Object.freeze({}) as Record<string, string>;

export function matchesLabels(labels: Record<string, string>, selector: Record<string, string> | undefined): boolean {
  for (const [k, v] of Object.entries(selector ?? {})) if (labels[k] !== v) return false;
  return true;
}

/** Runs operations on one key (a pod or container id) one after another. */
export class KeyedLock {
  private readonly tails = new Map<string, Promise<unknown>>();

  run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(key) ?? Promise.resolve();
    const next = prev.catch(() => {}).then(fn);
    const tail = next.catch(() => {});
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return next;
  }
}
