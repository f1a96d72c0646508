// What the container operations (one file per CRI RPC in this folder) work over: the status
// store, the task runtime, images, bundles and io, each a small interface so that a unit test
// can hand in fakes. The composition of these for berthd is in ../pod-runtime.ts.
import type { HandlerFeatures } from "../../oci/runtime-features.js";
import type { ContainerEventResponse, PodSandboxStatus } from "../../gen/cri/runtime/v1/api.js";
import type { ImageService } from "../../images/service.js";
import type { CgroupDriver } from "../../oci/index.js";
import type { Logger } from "../../util/log.js";
import type { Bundles } from "../bundle.js";
import type { KeyedLock } from "../context.js";
import type { RetryScheduler } from "../retry.js";
import type { Trash } from "../trash.js";
import type { ContainerStore, SandboxStore } from "../store/index.js";
import type { TaskRuntime } from "../../runtime/index.js";
import type { NriHooks } from "../../nri/hooks.js";

/** What containers need of the image service. */
export type ContainerImages = Pick<
  ImageService,
  "resolveId" | "status" | "prepareRootfs" | "stageRootfs" | "removeRootfs" | "forgetRootfs"
> & {
  readonly snapshotter: { readonly name: string };
  /** Changes whenever an image record does; absent (a fake), nothing derived from images is kept. */
  readonly generation?: number;
};

export interface ContainerDeps {
  store: ContainerStore;
  sandboxes: SandboxStore;
  runtime: TaskRuntime;
  images: ContainerImages;
  bundles: Bundles;
  /** Where a removed container's directories go to be deleted in the background. */
  trash: Trash;
  /** `listening` false: nobody streams events, so none need be built (absent: always built). */
  events: { publish(e: ContainerEventResponse): void; readonly listening?: boolean };
  /** The pod's status, for the container events sent to kubelet. */
  podStatus(sandboxId: string): Promise<PodSandboxStatus | undefined>;
  /** Start, stop, remove and exit handling of one container never overlap. */
  lock: KeyedLock;
  /** Retries of interrupted creates/removals that recovery could not finish at once. */
  retries: RetryScheduler;
  log: Logger;
  cgroupDriver: CgroupDriver;
  /** Longest CRI log record before a line is split into P records. */
  maxLogLineSize?: number;
  /** CDI spec directories, lowest priority first (default /etc/cdi, /var/run/cdi). */
  cdiSpecDirs?: string[];
  /** What each runtime handler can do (probed at start): a container asking for more is refused. */
  handlerFeatures?: Record<string, HandlerFeatures>;
  /** NRI plugins' hooks; absent means NRI is off. */
  nri?: NriHooks;
}
