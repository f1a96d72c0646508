// The life of a process in the shim, as one table (containerd's process/init_state.go and
// exec_state.go keep it as one object per state). Every change of a process's status goes
// through next(); what the table does not list is refused.
//
//   init:  created --start--> running --pause--> pausing --paused--> paused
//             |                  ^                  |                   |
//             |                  +---pauseFailed----+                   |
//             |                  +---------------resume-----------------+
//             |     (created, running, pausing, paused) --exit--> stopped
//             +--delete--> deleted <--delete-- stopped
//
//   exec:  created --start--> running --exit--> stopped --delete--> deleted
//          created --exit--> stopped;  created --delete--> deleted
//
// A shim that restarts finds its processes again (reattach.ts): a fresh process object
// starts as created and is moved by `adoptRunning` / `adoptPaused` to what the runtime says.
import { Status } from "../gen/containerd/types/task/task.js";
import { FailedPreconditionError } from "../util/errors.js";

export type ProcessKind = "init" | "exec";
export type ProcessState = "created" | "running" | "pausing" | "paused" | "stopped" | "deleted";
export type ProcessEvent =
  "start" | "pause" | "paused" | "pauseFailed" | "resume" | "exit" | "delete" | "adoptRunning" | "adoptPaused";

export const PROCESS_STATES: readonly ProcessState[] = [
  "created",
  "running",
  "pausing",
  "paused",
  "stopped",
  "deleted",
];
export const PROCESS_EVENTS: readonly ProcessEvent[] = [
  "start",
  "pause",
  "paused",
  "pauseFailed",
  "resume",
  "exit",
  "delete",
  "adoptRunning",
  "adoptPaused",
];

type Table = Partial<Record<ProcessState, Partial<Record<ProcessEvent, ProcessState>>>>;

/** The allowed transitions; anything else is refused. */
export const TRANSITIONS: Record<ProcessKind, Table> = {
  init: {
    created: { start: "running", exit: "stopped", delete: "deleted", adoptRunning: "running", adoptPaused: "paused" },
    running: { pause: "pausing", exit: "stopped" },
    pausing: { paused: "paused", pauseFailed: "running", exit: "stopped" },
    paused: { resume: "running", exit: "stopped" },
    stopped: { delete: "deleted" },
  },
  exec: {
    created: { start: "running", exit: "stopped", delete: "deleted", adoptRunning: "running" },
    running: { exit: "stopped" },
    stopped: { delete: "deleted" },
  },
};

/** The state `event` leads to from `from`, or undefined when the table refuses it. */
export function transition(kind: ProcessKind, from: ProcessState, event: ProcessEvent): ProcessState | undefined {
  return TRANSITIONS[kind][from]?.[event];
}

/** The state `event` leads to; throws FailedPreconditionError when it is refused. */
export function next(kind: ProcessKind, from: ProcessState, event: ProcessEvent): ProcessState {
  const to = transition(kind, from, event);
  if (to === undefined) throw new FailedPreconditionError(`${kind} process: cannot ${event} when ${from}`);
  return to;
}

/** The containerd task Status a state is reported as (a deleted process was stopped). */
export function statusOf(state: ProcessState): Status {
  switch (state) {
    case "created":
      return Status.CREATED;
    case "running":
      return Status.RUNNING;
    case "pausing":
      return Status.PAUSING;
    case "paused":
      return Status.PAUSED;
    case "stopped":
    case "deleted":
      return Status.STOPPED;
  }
}
