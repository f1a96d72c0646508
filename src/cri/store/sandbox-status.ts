// A pod sandbox's status record and the pure function that changes it (the pod counterpart of
// container-status.ts). A pod is READY from RunPodSandbox until its sandbox process exits or
// StopPodSandbox; a sandbox that exited by itself leaves the pod NOTREADY for good.
//
//   creating --ready--> READY --exit heard--> NOTREADY (exited, not recorded yet)
//      |                  |  \                     |
//      |                  |   unknown              | exit recorded (durable)
//      |                  |   (shim silent)        v
//      |                  |      v            NOTREADY (exited)
//      |                  |   NOTREADY (unknown) --exit heard / still running--> ...
//      |               stopped
//      |                  v
//      |              NOTREADY (stopped) --removing--> REMOVING --deleted--> (gone)
//      `---------------------------------------------^ (a failed RunPodSandbox is deleted)
//
// An exit heard while RunPodSandbox still runs is kept (exitHeard) and handled once it ends.
// The durable part (phase, the sandbox's exit time) is persisted by the store on every change.
import { PodSandboxState } from "../../gen/cri/runtime/v1/api.js";
import type { PodPhase } from "../../metadata/pods.js";

export interface SandboxStatus {
  /** Durable: creating, ready, stopped, removing. */
  readonly phase: PodPhase;
  /** Durable: when the sandbox process exited by itself (ns since the epoch); 0n if it did not. */
  readonly exitedAt: bigint;
  /** The sandbox's exit was heard but is not recorded yet. */
  readonly exitHeard: boolean;
  /** Recovery could not learn the sandbox's state (its shim did not answer). */
  readonly unknown: boolean;
}

export type SandboxEvent =
  | { type: "ready" }
  | { type: "exit-heard" }
  | { type: "exit-recorded"; at: bigint }
  | { type: "still-running" }
  | { type: "unknown" }
  | { type: "stopped" }
  | { type: "removing" };

export function initialSandboxStatus(
  row: { phase: PodPhase; sandboxExitedAt: bigint } = { phase: "creating", sandboxExitedAt: 0n },
): SandboxStatus {
  return { phase: row.phase, exitedAt: row.sandboxExitedAt, exitHeard: false, unknown: false };
}

/** The next record after `ev`; returns `s` itself when the event changes nothing. */
export function sandboxTransition(s: SandboxStatus, ev: SandboxEvent): SandboxStatus {
  switch (ev.type) {
    case "ready":
      return s.phase === "creating" ? { ...s, phase: "ready" } : s;
    case "exit-heard":
      return s.exitHeard && !s.unknown ? s : { ...s, exitHeard: true, unknown: false };
    case "exit-recorded":
      if (s.exitedAt > 0n) return s.exitHeard || s.unknown ? { ...s, exitHeard: false, unknown: false } : s;
      return { ...s, exitedAt: ev.at, exitHeard: false, unknown: false };
    case "still-running":
      return s.exitHeard || s.unknown ? { ...s, exitHeard: false, unknown: false } : s;
    case "unknown":
      return s.unknown ? s : { ...s, unknown: true };
    case "stopped":
      return s.phase === "ready" ? { ...s, phase: "stopped" } : s;
    case "removing":
      return s.phase === "removing" ? s : { ...s, phase: "removing" };
  }
}

export interface SandboxView {
  state: PodSandboxState;
  /** For verbose status: exited, unknown, deleted or running. */
  status: "exited" | "unknown" | "deleted" | "running";
}

/** What PodSandboxStatus and ListPodSandbox report for a record. */
export function sandboxView(s: SandboxStatus): SandboxView {
  const notReady = PodSandboxState.SANDBOX_NOTREADY;
  if (s.exitedAt > 0n || s.exitHeard) return { state: notReady, status: "exited" };
  if (s.unknown) return { state: notReady, status: "unknown" };
  if (s.phase !== "ready") return { state: notReady, status: "deleted" };
  return { state: PodSandboxState.SANDBOX_READY, status: "running" };
}

/** A sandbox berthd believes runs (the reconciliation asks its shim). */
export function sandboxBelievedRunning(s: SandboxStatus): boolean {
  return s.phase === "ready" && s.exitedAt === 0n && !s.exitHeard;
}
