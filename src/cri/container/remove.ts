// RemoveContainer: stops the container, deletes its task, unmounts and removes its rootfs,
// bundle and fifos, then its record (containerd's container_remove.go). The log file stays, as
// in containerd. OK when the container does not exist.
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
  d.store.apply(id, { type: "removing" });
  await stopEntry(d, id, 0);
  if (d.runtime.has(NS, id)) await d.runtime.delete(NS, id).catch(() => {});
  e.io?.close();
  e.io = undefined;
  await cleanupContainerFiles(d, id);
  await notifyNri(d, id, (nri, p, c) => nri.removeContainer(p, c));
  d.store.delete(id);
  await publishContainerEvent(d, id, ContainerEventType.CONTAINER_DELETED_EVENT, e.info);
}

/** Unmounts and removes what a container has on disk (idempotent). */
export async function cleanupContainerFiles(d: Pick<ContainerDeps, "bundles" | "images">, id: string): Promise<void> {
  unmountAll(d.bundles.rootfs(id));
  // The snapshot and the bundle are apart on disk: both are removed at once (the image
  // volumes and the idmap scratch are mounted in the bundle, so they go before it).
  const bundle = (async () => {
    await removeImageVolumes(d.images, id, d.bundles.dir(id));
    await releaseIdmapScratch(idmapScratch(d.bundles.dir(id)));
    await d.bundles.remove(id);
  })();
  const [snapshot, rest] = await Promise.allSettled([d.images.removeRootfs(id), bundle]);
  if (snapshot.status === "rejected") throw snapshot.reason;
  if (rest.status === "rejected") throw rest.reason;
}
