/**
 * Create request metadata by which berthd says it will Start the task right after Create, with
 * nothing in between that needs the task created but not started (no NRI plugin hears of
 * StartContainer). Then the task is created and started by one runtime command when its driver
 * can (runc, crun: `run --detach`), and the Start that follows only confirms it. Everything
 * else is as after create then start: TaskCreate, then TaskStart at that Start, the task
 * reported created until then, and its exit held back until TaskStart is out. containerd's
 * runc shim ignores the key, so berthd always calls Start. berthd's copy is in
 * runtime/task-create.ts.
 *
 * The process model's side is Proc.holdUntilStart and Proc.awaitingStart (process.ts).
 */
import { TaskStart } from "../gen/containerd/events/task.js";
import { Topics } from "./events.js";
import type { Proc } from "./process.js";
import type { Task } from "./task.js";
import type { TaskEvents } from "./task-events.js";

export const START_AT_ONCE_METADATA_KEY = "berth-start-at-once";

/**
 * With START_AT_ONCE_METADATA_KEY, Create metadata by which berthd says it sends no Start: the
 * Create that ran the task also confirms it, as that Start would have (the process started,
 * TaskStart published right after TaskCreate, a held exit let through after it), and answers
 * only then. A driver that cannot run and start in one step (runsc, a restore) starts the task
 * within that Create (service.ts). It saves berthd a round trip and the shim a call on every StartContainer and
 * RunPodSandbox. berthd sends it only to a shim whose Connect reports SHIM_VERSION 0.2 or later
 * (runtime/shim-features.ts), so an older serving shim that outlived an upgrade still gets its Start.
 */
export const START_CONFIRMED_METADATA_KEY = "berth-start-confirmed";

/**
 * After a restart of the serving shim (reattach.ts), before its monitor is adopted: a process
 * Create ran and no Start confirmed is held again as it was. The fact lives in the process's
 * record (startedAtCreate, and started once Start confirmed), written atomically with the
 * record at Create and Start, so it outlives the shim. The process then reads CREATED, an exit
 * that came meanwhile (or comes later) waits for the Start that publishes TaskStart, and a
 * Kill or Delete without Start lets it through, as before the restart. A Kill that already let
 * it through before the restart (exitBeforeStart) is not undone.
 *
 * A plain created task needs none of this across a restart: runc's init cannot exit before
 * `runc start`.
 */
export function holdAfterRestart(proc: Proc): void {
  if (proc.awaitingStart && !proc.record.exitBeforeStart) proc.holdUntilStart();
}

/**
 * For a Create that confirms the start (START_CONFIRMED_METADATA_KEY), what the Start would do
 * (service.ts start()): the process reads running, TaskStart follows TaskCreate, and an exit
 * held for the Start is let through after it.
 */
export function confirmAtCreate(task: Task, events: TaskEvents): void {
  const init = task.init;
  if (!init.exit && init.state === "created") init.to("start");
  events.publish(task, Topics.start, [
    "containerd.events.TaskStart",
    TaskStart,
    { containerId: task.id, pid: init.pid },
  ]);
  init.starting = undefined;
  init.openStartGate();
  events.log(task, `started init pid ${init.pid}`);
}
