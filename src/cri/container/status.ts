// ContainerStatus (containerd's container_status.go): the container's state as the status
// store keeps it, with no shim round trip (kubelet polls it every second). Verbose status is
// for people and debugging and asks the shim for the pid.
import {
  ContainerConfig,
  ContainerState,
  type ContainerStatus as CriContainerStatus,
} from "../../gen/cri/runtime/v1/api.js";
import { NotFoundError } from "../../util/errors.js";
import { CRI_NAMESPACE as NS, NO_INFO } from "../context.js";
import { imageVolumeStatus } from "../image-volumes.js";
import { storedSignalToCri } from "../stop-signal.js";
import { type ContainerEntry, containerView } from "../store/index.js";
import type { ContainerDeps } from "./deps.js";

export interface ContainerStatusResult {
  status: CriContainerStatus;
  info: Record<string, string>;
}

export function containerStatus(d: ContainerDeps, ref: string, verbose: boolean): Promise<ContainerStatusResult> {
  const e = d.store.resolve(ref);
  // Not a container yet (as it is not listed): CreateContainer has not returned it, and an NRI
  // plugin may still refuse it.
  if (e.status.phase === "creating") return Promise.reject(new NotFoundError(`container ${e.id} is being created`));
  return containerStatusOf(d, e, verbose);
}

/** `imageRefs` memoises image_ref by image id across the containers of one call (a pod's status, a list). */
export async function containerStatusOf(
  d: ContainerDeps,
  e: ContainerEntry,
  verbose: boolean,
  imageRefs = new Map<string, Promise<string>>(),
): Promise<ContainerStatusResult> {
  // kubelet's poll (not verbose, image_ref kept on the entry) is answered without an await.
  const known = cachedImageRef(d, e);
  const status = statusWith(d, e, known ?? (await imageRefFor(d, e, imageRefs)));
  if (!verbose) return { status, info: NO_INFO };
  const live = containerView(e.status);
  const info = e.info;
  const pid =
    live.state === ContainerState.CONTAINER_RUNNING
      ? ((await d.runtime.state(NS, e.id).catch(() => undefined))?.pid ?? 0)
      : 0;
  const out: Record<string, string> = {};
  out.info = JSON.stringify({
    sandboxID: info.sandboxId,
    pid,
    removing: e.status.phase === "removing",
    snapshotKey: e.id,
    snapshotter: d.images.snapshotter.name,
    runtimeType: d.runtime.record(NS, e.id)?.runtimeType ?? "",
    config: ContainerConfig.toJSON(e.config),
    runtimeSpec: d.bundles.tryReadSpec(e.id),
  });
  return { status, info: out };
}

/**
 * kubelet's poll (not verbose) answered without a promise: the status when the container is
 * past "creating" and its image_ref is kept, else undefined (the caller then goes through
 * containerStatus, which also refuses a container being created). Throws NotFoundError for an
 * unknown id, as containerStatus does. Each promise and microtask of a read costs most while V8
 * still interprets berthd's code (its first minutes).
 */
export function polledContainerStatus(d: ContainerDeps, ref: string): CriContainerStatus | undefined {
  const e = d.store.resolve(ref);
  return e.status.phase === "creating" ? undefined : containerStatusNow(d, e);
}

/**
 * The status without verbose info when the entry's image_ref is current, else undefined (the
 * caller then goes through containerStatusOf): PodSandboxStatus builds its containers' statuses
 * without a promise each.
 */
export function containerStatusNow(d: ContainerDeps, e: ContainerEntry): CriContainerStatus | undefined {
  const known = cachedImageRef(d, e);
  return known === undefined ? undefined : statusWith(d, e, known);
}

/**
 * The status message, the same object while what it is made of stays as it was (the entry's
 * status and config, its image_ref and user, the image records for its image volumes): the
 * encoder keeps its bytes by the object (response-encoder.ts), so a poll of a container that
 * did not change encodes nothing again.
 */
function statusWith(d: ContainerDeps, e: ContainerEntry, imageRef: string): CriContainerStatus {
  const user = userOf(d, e);
  const generation = d.images.generation;
  const kept = e.statusMessage;
  if (
    kept !== undefined &&
    generation !== undefined &&
    kept.status === e.status &&
    kept.config === e.config &&
    kept.imageRef === imageRef &&
    kept.user === user &&
    kept.generation === generation
  )
    return kept.message;
  const message = buildStatus(d, e, imageRef, user);
  if (generation !== undefined)
    e.statusMessage = { status: e.status, config: e.config, imageRef, user, generation, message };
  return message;
}

function buildStatus(
  d: ContainerDeps,
  e: ContainerEntry,
  imageRef: string,
  user: CriContainerStatus["user"],
): CriContainerStatus {
  const config = e.config;
  const live = containerView(e.status);
  const info = e.info;
  return {
    id: e.id,
    metadata: config.metadata,
    state: live.state,
    createdAt: info.createdAt,
    startedAt: e.status.startedAt,
    finishedAt: live.finishedAt,
    exitCode: live.exitCode,
    image: {
      image: info.imageRef,
      annotations: config.image?.annotations ?? {},
      userSpecifiedImage: config.image?.userSpecifiedImage ?? "",
      runtimeHandler: "",
      imageRef: info.imageId,
    },
    imageRef,
    reason: live.reason,
    message: live.message,
    labels: config.labels,
    annotations: config.annotations,
    mounts: imageVolumeStatus(d.images, config.mounts),
    logPath: info.logPath,
    resources: { linux: config.linux?.resources, windows: undefined },
    imageId: info.imageId,
    user,
    stopSignal: storedSignalToCri(info.stopSignal),
  };
}

/**
 * ContainerStatus.user: the uid, gid and supplementary groups the container's process really
 * got (image /etc/passwd and /etc/group, RunAsUser/RunAsGroup, the supplemental groups
 * policy), as kubelet reports them. Read once from the bundle's spec.
 */
function userOf(d: ContainerDeps, e: ContainerEntry): CriContainerStatus["user"] {
  if (e.user) return e.user;
  const user = d.bundles.tryReadSpec(e.id)?.process.user;
  if (!user) return undefined; // no bundle (yet, or any more)
  // As kubelet shows them (KEP-3619): every group the process has, the primary one included.
  const groups = [...new Set([user.gid, ...(user.additionalGids ?? [])])].sort((a, b) => a - b);
  e.user = { linux: { uid: BigInt(user.uid), gid: BigInt(user.gid), supplementalGroups: groups.map(BigInt) } };
  return e.user;
}

/**
 * The container's image_ref, kept on its entry while the image records do not change: kubelet
 * asks every container's status every second, and the answer moves only when an image is
 * pulled, tagged or removed.
 */
async function imageRefFor(d: ContainerDeps, e: ContainerEntry, memo: Map<string, Promise<string>>): Promise<string> {
  const generation = d.images.generation;
  const value = await imageRefOf(d, e.info.imageId, memo);
  rememberImageRef(d, e, generation, value);
  return value;
}

/** The entry's image_ref if the image records have not changed since it was kept. */
function cachedImageRef(d: ContainerDeps, e: ContainerEntry): string | undefined {
  const generation = d.images.generation;
  return generation !== undefined && e.imageRef?.generation === generation ? e.imageRef.value : undefined;
}

/** Keeps `value` as the entry's image_ref if the image records are still those of `generation`. */
export function rememberImageRef(d: ContainerDeps, e: ContainerEntry, generation: number | undefined, value: string) {
  if (generation !== undefined && d.images.generation === generation) e.imageRef = { generation, value };
}

/** image_ref: the repo digest when the image has one (what kubelet shows), else the id. */
export function imageRefOf(d: ContainerDeps, imageId: string, memo: Map<string, Promise<string>>): Promise<string> {
  let ref = memo.get(imageId);
  if (!ref) {
    ref = d.images
      .status(imageId)
      .catch(() => undefined)
      .then((img) => img?.repoDigests[0] ?? imageId);
    memo.set(imageId, ref);
  }
  return ref;
}
