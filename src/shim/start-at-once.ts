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
export const START_AT_ONCE_METADATA_KEY = "berth-start-at-once";
