// Container recovery at berthd start: log pumps reattached to live tasks, exits that happened
// while berthd was down recorded, interrupted creates rolled back and removals finished. The
// periodic reconciliation (../exit-monitor.ts) later catches whatever a lost event hides.
import { NotFoundError } from "../../util/errors.js";
import { nowNs } from "../../util/clock.js";
import { CRI_NAMESPACE as NS } from "../context.js";
import { ContainerLogger } from "../io/container-logger.js";
import { backoffMs } from "../retry.js";
import { UNKNOWN_EXIT_CODE, UNKNOWN_REASON } from "../store/index.js";
import type { ContainerDeps } from "./deps.js";
import { handleContainerExit } from "./exit.js";
import { cleanupContainerFiles, deleteContainerRecord } from "./remove.js";
import { waitExit } from "./stop.js";

export async function recoverContainers(d: ContainerDeps): Promise<void> {
  for (const e of d.store.list()) {
    const id = e.id;
    try {
      const s = e.status;
      if (s.phase === "creating" || s.phase === "removing") {
        await finishInterrupted(d, id, 0);
        continue;
      }
      if (s.exit) {
        // Exit recorded, task not yet deleted (a crash in between): finish that.
        if (d.runtime.has(NS, id)) {
          await d.runtime.kill(NS, id, 9, { all: true }).catch(() => {});
          await d.runtime.delete(NS, id).catch(() => {});
        }
        continue;
      }
      if (!d.runtime.has(NS, id)) {
        // Started, and its task vanished while berthd was down: as containerd does, exited
        // with an unknown exit code and reason (never RUNNING without a task).
        if (s.startedAt > 0n) {
          d.store.apply(id, {
            type: "task-deleted",
            exit: {
              exitCode: UNKNOWN_EXIT_CODE,
              finishedAt: nowNs(),
              reason: UNKNOWN_REASON,
              message: "its task was gone when berthd restarted",
            },
          });
        }
        continue;
      }
      // The one time at start the state kept in berthd is refreshed from the shim.
      let state;
      try {
        state = await d.runtime.state(NS, id);
      } catch (err) {
        if (!(err instanceof NotFoundError)) {
          d.store.apply(id, { type: "unknown" });
          d.log.warn({ err, container: id }, "the shim did not tell the container's state: UNKNOWN");
          continue;
        }
      }
      if (!state || state.status === "stopped") {
        await handleContainerExit(d, id);
        continue;
      }
      if (s.startedAt === 0n) {
        if (state.status === "created") {
          // StartContainer was interrupted before Start: as containerd, the task goes and
          // the container stays CREATED (it can be started again).
          await d.runtime.kill(NS, id, 9, { all: true }).catch(() => {});
          await d.runtime.delete(NS, id).catch(() => {});
          continue;
        }
        // Started, but berthd stopped before it recorded the start time.
        d.store.apply(id, { type: "started", at: nowNs() });
      }
      e.io = new ContainerLogger(d.bundles.io(id), e.info.logPath, { hold: false, maxLineSize: d.maxLogLineSize });
    } catch (err) {
      d.log.warn({ err, container: id }, "recovering a container failed");
    }
  }
}

/**
 * Finishes an interrupted RemoveContainer, or rolls back an interrupted CreateContainer:
 * the task killed and deleted, the rootfs and files removed, then the record. Every step is
 * idempotent (NotFound means already done), so an attempt that fails is tried again later
 * (backing off, under the container's lock, until the record is gone) instead of leaving it
 * behind for good.
 */
async function finishInterrupted(d: ContainerDeps, id: string, attempt: number): Promise<void> {
  await d.lock.run(id, async () => {
    const e = d.store.get(id);
    const phase = e?.status.phase;
    if (!e || (phase !== "creating" && phase !== "removing")) return;
    try {
      if (d.runtime.has(NS, id)) {
        await d.runtime.kill(NS, id, 9, { all: true }).catch(() => {});
        await waitExit(d, id, 10_000);
        // The kill's TaskExit event starts the exit handling, which deletes the task too: share
        // it (as RemoveContainer does through StopContainer), so one Delete at a time reaches the shim.
        await handleContainerExit(d, id).catch(() => {});
        if (d.runtime.has(NS, id)) {
          await d.runtime.delete(NS, id).catch((err: unknown) => {
            if (!(err instanceof NotFoundError)) throw err;
          });
        }
      }
      // An exit handler that began before our delete may still be in its own: with
      // containerd-shim-runc-v2 that runs runc (and the shim's `delete` command) in the
      // bundle, which writes <bundle>/log.json, racing the bundle's removal (ENOTEMPTY).
      await e.exiting?.catch(() => {});
      await cleanupContainerFiles(d, id);
      deleteContainerRecord(d, id);
      d.log.info(
        { container: id, phase },
        phase === "creating"
          ? "rolled back an interrupted container create"
          : "finished an interrupted container removal",
      );
    } catch (err) {
      d.log.warn(
        { err, container: id, phase, retryInMs: backoffMs(attempt) },
        "finishing an interrupted container create/remove failed; trying again later",
      );
      d.retries.schedule(attempt, () => {
        finishInterrupted(d, id, attempt + 1).catch((e: unknown) =>
          d.log.warn({ err: e, container: id }, "retrying an interrupted container create/remove failed"),
        );
      });
    }
  });
}
