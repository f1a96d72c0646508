// Pod recovery at berthd start: half-run pods rolled back, half-removed ones finished, pods
// whose sandbox process exited meanwhile marked NOTREADY.
import { unmountAll } from "../../snapshots/mount.js";
import { podUsernsPath, unpinNamespace } from "../userns/pin.js";
import { NotFoundError } from "../../util/errors.js";
import { waitExit } from "../container/stop.js";
import { CRI_NAMESPACE as NS } from "../context.js";
import { podFiles, unmountShm } from "../pod-files.js";
import { backoffMs } from "../retry.js";
import { removeOwnCgroup } from "./cgroup.js";
import type { SandboxDeps } from "./deps.js";
import { sandboxExited } from "./exit.js";
import { removeSandboxEntry } from "./remove.js";
import { rm } from "node:fs/promises";

/** How long a rollback waits for the killed sandbox process before it tries again later. */
const ROLLBACK_WAIT_MS = 10_000;

/** Returns the ids of the pods whose network must stay. */
export async function recoverSandboxes(d: SandboxDeps): Promise<Set<string>> {
  const keep = new Set<string>();
  for (const e of d.store.list()) {
    const phase = e.status.phase;
    if (phase === "creating" || phase === "removing") {
      await finishInterrupted(d, e.id, 0);
      continue;
    }
    try {
      if (phase === "ready") {
        keep.add(e.id);
        // A sandbox process that died while berthd was down (no exit event reached us); the
        // one time at start the pod's kept state is refreshed from its shim.
        await d.lock.run(e.id, () => sandboxExited(d, e.id));
      }
    } catch (err) {
      // The shim did not tell (sandboxExited only throws for that): unknown, reported NOTREADY.
      if (phase === "ready") d.store.apply(e.id, { type: "unknown" });
      d.log.warn({ err, pod: e.id }, "recovering a pod failed");
    }
  }
  return keep;
}

/**
 * Rolls back an interrupted RunPodSandbox or finishes an interrupted RemovePodSandbox. Every
 * step is idempotent, so an attempt that fails (a shim not answering yet, a busy mount) is
 * tried again later, backing off, until the record is gone: a pod half made or half removed
 * must never stay behind for good (a 'creating' pod is not even listed for kubelet to remove).
 */
async function finishInterrupted(d: SandboxDeps, id: string, attempt: number): Promise<void> {
  await d.lock.run(id, async () => {
    const e = d.store.get(id);
    const phase = e?.status.phase;
    if (!e || (phase !== "creating" && phase !== "removing")) return;
    try {
      if (phase === "creating") {
        if (d.runtime.has(NS, id)) {
          await d.runtime.kill(NS, id, 9, { all: true }).catch(() => {});
          // Bounded: this runs before berthd serves, and a process the kill missed must not
          // keep it from serving. The retry below kills again.
          if (!(await waitExit(d, id, ROLLBACK_WAIT_MS))) throw new Error("the killed sandbox process did not end");
          await d.runtime.delete(NS, id).catch((err: unknown) => {
            if (!(err instanceof NotFoundError)) throw err;
          });
        }
        unmountShm(podFiles(e.info.podDir).shm);
        await d.network.teardownPod(id);
        await removeOwnCgroup(d, id, e.config);
        unmountAll(d.bundles.rootfs(id)); // a pod with a user namespace: its sandbox rootfs bind
        await d.bundles.remove(id);
        await unpinNamespace(podUsernsPath(e.info.podDir));
        await rm(e.info.podDir, { recursive: true, force: true });
        d.store.delete(id);
        d.log.info({ pod: id }, "rolled back an interrupted RunPodSandbox");
      } else {
        await removeSandboxEntry(d, id);
        d.log.info({ pod: id }, "finished an interrupted RemovePodSandbox");
      }
    } catch (err) {
      d.log.warn(
        { err, pod: id, phase, retryInMs: backoffMs(attempt) },
        "finishing an interrupted RunPodSandbox/RemovePodSandbox failed; trying again later",
      );
      d.retries.schedule(attempt, () => {
        finishInterrupted(d, id, attempt + 1).catch((err2: unknown) =>
          d.log.warn({ err: err2, pod: id }, "retrying an interrupted pod create/remove failed"),
        );
      });
    }
  });
}
