// A container's status record and the one pure function that changes it (DESIGN.md principle
// 2; containerd's internal/cri/store/container/status.go is the model). Nothing else in the
// CRI layer decides what state a container is in: operations and the exit monitor describe
// what happened as a ContainerEvent, and containerTransition() answers the next record.
//
//   creating --created--> CREATED --started--> RUNNING --exit heard--> RUNNING (draining)
//      |                    |                   |   \                        |
//      |                start failed            |    `--exit heard,           | output drained
//      |                    v                   |       shim dead--.          v
//      |                 EXITED (final) <--task deleted--  EXITED <--------'
//      |                                        |                   ^
//      |                          unknown (shim silent at recovery) |
//      |                                        v                   |
//      |                                     UNKNOWN ---exit heard / drained
//      |                                        |
//      `--------------------removing (any state)---> REMOVING --deleted--> (gone)
//
// - An exit the shim reports is "heard" first and shown as EXITED only once the container's
//   output drained into its log ("output drained"): kubelet reads a finished container's log
//   as soon as it sees it exited. The OOM verdict is settled before that, so a status never
//   says Error, then OOMKilled.
// - An exit the runtime reports for a dead shim shows at once (finishing it may never reach
//   that shim), as containerd's Unknown exit.
// - "task deleted" settles the exit (the task is gone from its shim); "still running" drops a
//   stale exit or unknown verdict when the shim says the task runs.
// The durable part (phase, start time, exit) is persisted by the store on every change.
import { ContainerState } from "../../gen/cri/runtime/v1/api.js";
import type { ContainerExit, ContainerPhase } from "../../metadata/containers.js";

/** containerd's exit code and reason for a container whose task vanished without a known exit. */
export const UNKNOWN_EXIT_CODE = 255;
export const UNKNOWN_REASON = "Unknown";

export interface ContainerStatus {
  /** Durable: creating (CreateContainer running), created, removing (RemoveContainer running). */
  readonly phase: ContainerPhase;
  /** Durable: ns since the epoch; 0n until started. */
  readonly startedAt: bigint;
  /** Durable: the exit reported (EXITED). */
  readonly exit?: ContainerExit;
  /** The exit is settled: the task was deleted from its shim (or never existed). */
  readonly exitFinal: boolean;
  /** An exit heard from the shim whose output is still draining (not reported yet). */
  readonly exitHeard?: ContainerExit;
  /** The shim reported an OOM kill in the container. */
  readonly oom: boolean;
  /** Recovery could not learn the task's state (its shim did not answer). */
  readonly unknown: boolean;
}

export type ContainerEvent =
  | { type: "created" }
  | { type: "started"; at: bigint }
  /** StartContainer failed: containerd records exit 128, reason StartError. */
  | { type: "start-failed"; at: bigint; message: string }
  /** An exit event; `shimDead` when the runtime, not the shim, tells of it. */
  | { type: "exit-heard"; exit: ContainerExit; shimDead: boolean }
  | { type: "oom" }
  /** The output is in: `exit` is what is reported from now on. */
  | { type: "output-drained"; exit: ContainerExit }
  /** The task is deleted from its shim; `exit` is the settled exit. */
  | { type: "task-deleted"; exit: ContainerExit }
  | { type: "still-running" }
  | { type: "unknown" }
  | { type: "removing" };

/** The record of a container just inserted (phase creating) or loaded from its row. */
export function initialContainerStatus(
  row: { phase: ContainerPhase; startedAt: bigint; exit?: ContainerExit } = { phase: "creating", startedAt: 0n },
): ContainerStatus {
  return {
    phase: row.phase,
    startedAt: row.startedAt,
    exit: row.exit,
    exitFinal: !!row.exit,
    oom: false,
    unknown: false,
  };
}

/** The next record after `ev`; returns `s` itself when the event changes nothing. */
export function containerTransition(s: ContainerStatus, ev: ContainerEvent): ContainerStatus {
  switch (ev.type) {
    case "created":
      return s.phase === "creating" ? { ...s, phase: "created" } : s;
    case "started":
      // Also after an exit: a process that exits at once may be handled before Start returns.
      return s.startedAt === 0n ? { ...s, startedAt: ev.at } : s;
    case "start-failed":
      if (s.exit) return s;
      return {
        ...s,
        exit: { exitCode: 128, finishedAt: ev.at, reason: "StartError", message: ev.message },
        exitFinal: true,
        exitHeard: undefined,
      };
    case "exit-heard":
      if (s.exit) return s;
      if (ev.shimDead) {
        const exit = { ...ev.exit, reason: UNKNOWN_REASON };
        return { ...s, exit, exitHeard: undefined, unknown: false };
      }
      return s.exitHeard ? s : { ...s, exitHeard: ev.exit };
    case "oom":
      return s.oom || s.exitFinal ? s : { ...s, oom: true };
    case "output-drained":
      if (s.exitFinal) return s;
      return { ...s, exit: ev.exit, exitHeard: undefined, unknown: false };
    case "task-deleted":
      if (s.exitFinal) return s;
      return { ...s, exit: ev.exit, exitFinal: true, exitHeard: undefined, unknown: false, oom: false };
    case "still-running":
      if (s.exit || (!s.exitHeard && !s.unknown)) return s;
      return { ...s, exitHeard: undefined, unknown: false };
    case "unknown":
      return s.exit || s.unknown ? s : { ...s, unknown: true };
    case "removing":
      return s.phase === "removing" ? s : { ...s, phase: "removing" };
  }
}

export interface ContainerView {
  state: ContainerState;
  exitCode: number;
  finishedAt: bigint;
  reason: string;
  message: string;
}

/** What ContainerStatus and ListContainers report for a record. */
export function containerView(s: ContainerStatus): ContainerView {
  if (s.exit) return { state: ContainerState.CONTAINER_EXITED, ...s.exit };
  if (s.unknown)
    return {
      state: ContainerState.CONTAINER_UNKNOWN,
      exitCode: 0,
      finishedAt: 0n,
      reason: UNKNOWN_REASON,
      message: "",
    };
  const state = s.startedAt > 0n ? ContainerState.CONTAINER_RUNNING : ContainerState.CONTAINER_CREATED;
  return { state, exitCode: 0, finishedAt: 0n, reason: "", message: "" };
}

/** A task berthd believes runs (the reconciliation asks its shim). */
export function believedRunning(s: ContainerStatus): boolean {
  return s.phase !== "creating" && s.startedAt > 0n && !s.exit && !s.exitHeard;
}

/** The reason an exit gets once its OOM verdict is known. */
export function exitReason(exitCode: number, oomKilled: boolean): string {
  return oomKilled ? "OOMKilled" : exitCode === 0 ? "Completed" : "Error";
}
