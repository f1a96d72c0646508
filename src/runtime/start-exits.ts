// Init exits held back for a task whose start berth's shim confirmed at Create (task-create.ts
// START_CONFIRMED_METADATA_KEY), until the caller collects that start with start().
//
// With a Start call, the shim itself held a fast exit until that Start: the caller had the task
// in the table and its log pump in place before any TaskExit could reach it (an exit handled
// earlier finds no task to delete and no output to drain). With no Start call the shim lets the
// exit through at Create, and its TaskExit may arrive before the Create's answer; so berthd
// holds it here from before the Create until the caller's start(), or a kill or delete of the
// task without it, or the Create failing: the same points at which the shim opens its own gate.
import type { RuntimeEvent } from "./events.js";

export class HeldStartExits {
  private readonly held = new Map<string, RuntimeEvent[]>();
  /** Where a released event goes (the manager's event path, which it skipped). */
  deliver: (ev: RuntimeEvent) => void = () => {};

  /** Holds the task's init exits from now on. */
  hold(key: string): void {
    if (!this.held.has(key)) this.held.set(key, []);
  }

  /** Keeps `ev` if it is an init exit of the task `key` names and that task is held; true when kept. */
  offer(key: string, ev: RuntimeEvent): boolean {
    if (ev.type !== "exit" || ev.execId !== "") return false;
    const list = this.held.get(key);
    if (!list) return false;
    list.push(ev);
    return true;
  }

  /** Stops holding the task's exits and delivers those held, in order. */
  release(key: string): void {
    const list = this.held.get(key);
    if (!list) return;
    this.held.delete(key);
    for (const ev of list) this.deliver(ev);
  }
}
