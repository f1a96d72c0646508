// GetContainerEvents: a broadcast of container lifecycle events to every open stream.
// Each subscriber has its own bounded queue, so a slow client loses its oldest events
// (and is told so in the log) instead of making berthd hold memory without bound.
import type { ContainerEventResponse } from "../gen/cri/runtime/v1/api.js";

const MAX_QUEUED = 1000;

export class CriEvents {
  private readonly subscribers = new Set<(e: ContainerEventResponse) => void>();

  /** Whether anyone streams events now (GetContainerEvents): publishers skip building them otherwise. */
  get listening(): boolean {
    return this.subscribers.size > 0;
  }

  publish(e: ContainerEventResponse): void {
    for (const s of this.subscribers) s(e);
  }

  /** Delivers events to `send` in order until `signal` aborts. */
  async stream(send: (e: ContainerEventResponse) => Promise<void>, signal: AbortSignal): Promise<void> {
    const queue: ContainerEventResponse[] = [];
    let wake: (() => void) | undefined;
    const sub = (e: ContainerEventResponse) => {
      if (queue.length >= MAX_QUEUED) queue.shift();
      queue.push(e);
      wake?.();
    };
    this.subscribers.add(sub);
    try {
      while (!signal.aborted) {
        const next = queue.shift();
        if (next) {
          await send(next);
          continue;
        }
        await new Promise<void>((resolve) => {
          wake = resolve;
          signal.addEventListener("abort", () => resolve(), { once: true });
        });
        wake = undefined;
      }
    } finally {
      this.subscribers.delete(sub);
    }
  }
}
