// A container's rootfs unmount when its task is deleted (exit.ts), on the thread pool, and the
// one still in flight per rootfs, so that RemoveContainer (cleanupContainerFiles) never moves
// a bundle away while its rootfs is still being unmounted.
import { unmountAllAsync } from "../../snapshots/mount.js";

/** Unmounts in flight, by rootfs path (unique per daemon root and container). */
const inFlight = new Map<string, Promise<void>>();

/**
 * Unmounts everything on `rootfs` without blocking the event loop (an overlay's unmount syncs
 * its upper filesystem). A second call while one runs shares it.
 */
export function unmountRootfs(rootfs: string): Promise<void> {
  let p = inFlight.get(rootfs);
  if (!p) {
    p = unmountAllAsync(rootfs).finally(() => {
      if (inFlight.get(rootfs) === p) inFlight.delete(rootfs);
    });
    inFlight.set(rootfs, p);
  }
  return p;
}

/** Resolves once no unmount of `rootfs` is in flight (whether it succeeded or not). */
export async function rootfsUnmountSettled(rootfs: string): Promise<void> {
  await inFlight.get(rootfs)?.catch(() => {});
}
