// Which init exits the manager has reported, so that each is reported once. A shim's own
// TaskExit can come late: containerd 2.x's runc shim marks the process exited (Wait and
// Delete answer) before it writes the exit status file and only then queues TaskExit, so a
// Delete right after Wait publishes TaskDelete first. The manager then reports the exit
// itself before the delete (from the delete's answer) and drops the shim's TaskExit when it
// arrives, possibly after the task is forgotten; hence a memory beyond the task entries,
// bounded since a late TaskExit comes within moments or never.
//
// A task's TaskDelete likewise: that shim queues it while answering Delete and publishes it
// from another goroutine, and when the Shutdown that follows the last task's delete wins, the
// shim exits without publishing it (containerd 2.4: seen under load, the event never came).
// The manager reports the delete itself from the delete's answer unless the shim's came
// first, and drops the shim's when it comes after. The same memory, keyed the same way.
export class ReportedInitExits {
  private readonly seen = new Set<string>();

  constructor(private readonly capacity = 4096) {}

  private static key(namespace: string, id: string, pid: number): string {
    return `${namespace}/${id}/${pid}`;
  }

  /** Notes the exit as reported; false when it already was. */
  add(namespace: string, id: string, pid: number): boolean {
    const k = ReportedInitExits.key(namespace, id, pid);
    if (this.seen.has(k)) return false;
    this.seen.add(k);
    if (this.seen.size > this.capacity) {
      // Sets iterate in insertion order: the oldest goes.
      this.seen.delete(this.seen.values().next().value!);
    }
    return true;
  }
}
