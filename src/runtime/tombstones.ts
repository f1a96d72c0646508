// Dead-shim tombstones. A task whose shim is gone has nothing alive that knows about it, so
// the manager keeps its last word itself (DESIGN.md principle 2's one exception): the exit
// seen in events if there was one, else 255 and the reason, until the task is deleted. The
// shim's `delete` command cleans up after it (runc state, mounts) in the background.
import { NotFoundError } from "../util/errors.js";
import type { TaskEntry, TaskTable } from "./task-table.js";
import type { ExitResult } from "./task-runtime.js";

export interface Tombstone extends ExitResult {
  reason: string;
  /** The shim `delete` command run to clean up after the dead shim. */
  cleanup: Promise<void>;
}

/** Reports the task exited (unless its exit was already reported) and cleans up with the shim's `delete` command. */
export function markDead(table: TaskTable, e: TaskEntry, reason: string): void {
  if (e.dead) return;
  const { namespace, id } = e.record;
  const known = e.lastExit;
  const exitedAt = known?.exitedAt ?? new Date();
  const tomb: Tombstone = {
    pid: known?.pid ?? 0,
    exitStatus: known?.exitStatus ?? 255,
    exitedAt,
    reason,
    cleanup: Promise.resolve(),
  };
  e.dead = tomb;
  e.conn = undefined;
  table.log.warn({ namespace, task: id, reason }, "task reported exited: its shim is gone");
  tomb.cleanup = table
    .runDeleteCommand(e.record)
    .then((r) => {
      if (!known && r.pid) tomb.pid = r.pid;
    })
    .catch((err: unknown) => table.log.warn({ err, task: id }, "shim delete after a dead shim failed"));
  if (!known) table.emitInitExit(namespace, id, { pid: tomb.pid, exitStatus: tomb.exitStatus, exitedAt, reason });
}

/** The exit a tombstone reports. */
export function tombstoneExit(t: Tombstone): ExitResult {
  return { pid: t.pid, exitStatus: t.exitStatus, exitedAt: t.exitedAt, reason: t.reason };
}

/** The answer of calls that need a running task when its shim is gone. */
export function deadNotRunning(t: Tombstone, e: TaskEntry): never {
  throw new NotFoundError(`task ${e.record.id} is not running: ${t.reason}`);
}
