// RemoveContainer: stops the container, deletes its task, unmounts its rootfs, moves its
// bundle, fifos and snapshot out of the way (deleted in the background), then deletes its
// record (containerd's container_remove.go). The log file stays, as in containerd. OK when the
// container does not exist.
import { existsSync } from "node:fs";
import { idmapScratch, releaseIdmapScratch } from "../userns/rootfs.js";
import { ContainerEventType } from "../../gen/cri/runtime/v1/api.js";
import { unmountAll } from "../../snapshots/mount.js";
import { NotFoundError } from "../../util/errors.js";
import { CRI_NAMESPACE as NS } from "../context.js";
import { removeImageVolumes } from "../image-volumes.js";
import type { ContainerEntry } from "../store/index.js";
import type { ContainerDeps } from "./deps.js";
import { publishContainerEvent } from "./events.js";
import { stopEntry } from "./stop.js";
import { notifyNri } from "../nri-view.js";
import { rootfsUnmountSettled } from "./rootfs-unmount.js";

export async function removeContainer(d: ContainerDeps, ref: string): Promise<void> {
  let e: ContainerEntry;
  try {
    e = d.store.resolve(ref);
  } catch (err) {
    if (err instanceof NotFoundError) return;
    throw err;
  }
  await d.lock.run(e.id, async () => {
    if (d.store.get(e.id)) await removeEntry(d, e.id);
  });
}

/** Removes the container (no lock taken: callers hold the container's or its pod's). */
export async function removeEntry(d: ContainerDeps, id: string): Promise<void> {
  const e = d.store.get(id);
  if (!e) return;
  // A task still to stop and delete: marked first, so that a crash meanwhile leaves a removal
  // recovery finishes. Without one (exited, or never started), what follows is only moves and
  // one transaction, each step idempotent: a crash in between leaves the container as it was
  // for kubelet to remove again, so no mark (and no commit for it) is needed.
  if (d.runtime.has(NS, id)) {
    d.store.apply(id, { type: "removing" });
    await stopEntry(d, id, 0);
    if (d.runtime.has(NS, id)) await d.runtime.delete(NS, id).catch(() => {});
  }
  // An exit handling still in its last steps (it unmounts the rootfs too) ends first.
  await e.exiting?.catch(() => {});
  e.io?.close();
  e.io = undefined;
  await cleanupContainerFiles(d, id);
  await notifyNri(d, id, (nri, p, c) => nri.removeContainer(p, c));
  deleteContainerRecord(d, id);
  await publishContainerEvent(d, id, ContainerEventType.CONTAINER_DELETED_EVENT, e.info);
}

/**
 * Unmounts what a container has on disk and moves its bundle and io dir out of the way, to
 * be deleted in the background (trash.ts): RemoveContainer waits for no recursive removal,
 * as containerd's, whose garbage collector removes snapshot directories later. Idempotent: a
 * removal interrupted anywhere is finished by calling it again.
 */
export async function cleanupContainerFiles(
  d: Pick<ContainerDeps, "bundles" | "images" | "trash">,
  id: string,
): Promise<void> {
  // Usually unmounted already, when its task was deleted (exit.ts): then one EINVAL, cheaper
  // synchronous than a thread-pool round trip. That unmount may still be in flight (an exit
  // handled by the exit monitor, a path that did not wait for it): the bundle moves only after.
  const rootfs = d.bundles.rootfs(id);
  await rootfsUnmountSettled(rootfs);
  unmountAll(rootfs);
  // The image volumes and the idmap scratch are mounted in the bundle: they go before it moves.
  const bundle = d.bundles.dir(id);
  await removeImageVolumes(d.images, id, bundle);
  const scratch = idmapScratch(bundle);
  if (existsSync(scratch)) await releaseIdmapScratch(scratch);
  d.bundles.discard(id, d.trash);
}

/**
 * Deletes the container's record and its snapshot's in one transaction (one commit to sync),
 * last, after its files are out of the way; once that committed, the snapshot's files are moved
 * aside and go to the background too (if it does not commit, record and snapshot both stay).
 */
export function deleteContainerRecord(d: Pick<ContainerDeps, "store" | "images" | "trash">, id: string): void {
  const moveFiles = d.store.deleteWith(id, () => d.images.forgetRootfs(id));
  const snapshot = moveFiles?.();
  if (snapshot) d.trash.removeLater(snapshot);
}
