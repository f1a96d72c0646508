// The CRI layer's one subscriber to runtime events (containerd's internal/cri/server/events.go):
// it routes the exit of a task's init process to the container or the pod it belongs to, and
// OOM kills to the container. Everything else the runtime reports is ignored here.
//
// Events can be lost (a shim that dies between the exit and the event, a bug), and a lost exit
// must not leave a container reported RUNNING forever (DESIGN.md principle 2). So the monitor
// also reconciles: at start and every `intervalMs` it asks the shim of every task berthd
// believes running (or could not learn at recovery) for its state, and feeds what it finds to
// the same handlers an event would have reached.
import { CRI_NAMESPACE as NS } from "./context.js";
import type { ContainerDeps } from "./container/deps.js";
import { handleContainerExit, onContainerExit, onContainerOom } from "./container/exit.js";
import { ContainerLogger } from "./io/container-logger.js";
import type { SandboxDeps } from "./sandbox/deps.js";
import { noticeSandboxExit, onSandboxExit } from "./sandbox/exit.js";
import { believedRunning, sandboxBelievedRunning, UNKNOWN_EXIT_CODE, UNKNOWN_REASON } from "./store/index.js";
import { nowNs } from "../util/clock.js";
import { NotFoundError } from "../util/errors.js";

/** How often the shims are asked about the tasks berthd believes running. */
export const RECONCILE_INTERVAL_MS = 10_000;

export class ExitMonitor {
  private readonly unsubscribe: () => void;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private closed = false;

  /** Subscribes at once, so that no exit is missed while recovery runs. */
  constructor(
    private readonly containers: ContainerDeps,
    private readonly sandboxes: SandboxDeps,
    private readonly intervalMs = RECONCILE_INTERVAL_MS,
  ) {
    this.unsubscribe = containers.runtime.onEvent((ev) => {
      if (ev.namespace !== NS) return;
      if (ev.type === "oom") {
        if (containers.store.get(ev.containerId)) onContainerOom(containers, ev.containerId);
        return;
      }
      if (ev.type !== "exit" || ev.execId !== "") return;
      if (containers.store.get(ev.containerId)) onContainerExit(containers, ev.containerId, ev);
      else if (sandboxes.store.get(ev.containerId)) onSandboxExit(sandboxes, ev.containerId);
    });
  }

  /**
   * Reconciles every intervalMs until close(). The pass at start is recovery's (container/
   * recover.ts, sandbox/recover.ts asks every shim once), which routes what it finds to the
   * same handlers; call this once it is done.
   */
  start(): void {
    this.timer ??= setInterval(() => void this.reconcile(), this.intervalMs);
    this.timer.unref();
  }

  /** One reconciliation pass (passes never overlap: a call during one returns that one). */
  reconcile(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.running ??= this.pass()
      .catch((err: unknown) => this.containers.log.warn({ err }, "reconciling task states failed"))
      .finally(() => (this.running = undefined));
    return this.running;
  }

  private async pass(): Promise<void> {
    for (const e of this.containers.store.list()) {
      if (this.closed) return;
      if (believedRunning(e.status)) await this.reconcileContainer(e.id);
    }
    for (const e of this.sandboxes.store.list()) {
      if (this.closed) return;
      if (sandboxBelievedRunning(e.status)) await this.reconcileSandbox(e.id);
    }
  }

  private async reconcileContainer(id: string): Promise<void> {
    const d = this.containers;
    if (!d.runtime.has(NS, id)) {
      // No task and no exit: nothing will ever tell of this exit. Never report RUNNING for it.
      d.log.warn({ container: id }, "reconciliation: the container's task is gone without an exit");
      d.store.apply(id, {
        type: "task-deleted",
        exit: {
          exitCode: UNKNOWN_EXIT_CODE,
          finishedAt: nowNs(),
          reason: UNKNOWN_REASON,
          message: "the container's task is gone",
        },
      });
      return;
    }
    let state;
    try {
      state = await d.runtime.state(NS, id);
    } catch (err) {
      if (!(err instanceof NotFoundError)) return; // a busy shim decides nothing; asked again next time
    }
    const e = d.store.get(id);
    if (!e || !believedRunning(e.status)) return; // changed meanwhile
    if (state && state.status !== "stopped") {
      if (e.status.unknown) {
        // The shim answers again: the task runs; pump its output from now on.
        d.store.apply(id, { type: "still-running" });
        e.io ??= new ContainerLogger(d.bundles.io(id), e.info.logPath, { hold: false, maxLineSize: d.maxLogLineSize });
      }
      return;
    }
    d.log.warn({ container: id }, "reconciliation: the container exited and no event told berthd");
    if (state) onContainerExit(d, id, state);
    else await handleContainerExit(d, id);
  }

  private async reconcileSandbox(id: string): Promise<void> {
    const d = this.sandboxes;
    let stopped = !d.runtime.has(NS, id);
    if (!stopped) {
      try {
        const s = await d.runtime.state(NS, id);
        stopped = s.status === "stopped";
        if (!stopped && d.store.get(id)?.status.unknown) d.store.apply(id, { type: "still-running" });
      } catch (err) {
        if (!(err instanceof NotFoundError)) return;
        stopped = true;
      }
    }
    const e = d.store.get(id);
    if (!stopped || !e || !sandboxBelievedRunning(e.status)) return;
    d.log.warn({ pod: id }, "reconciliation: the sandbox process exited and no event told berthd");
    d.store.apply(id, { type: "exit-heard" });
    noticeSandboxExit(d, id);
  }

  close(): void {
    this.closed = true;
    clearInterval(this.timer);
    this.unsubscribe();
  }
}
