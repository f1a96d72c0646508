// What the shim tells the outside about its tasks: containerd task events through the
// publisher, and lines in the shim's log (and the task's log fifo). It is also the watcher
// of every process's monitor (launcher.ts): exits and OOMs become TaskExit and TaskOOM.
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";

import { TaskExit, TaskOOM } from "../gen/containerd/events/task.js";
import { Topics, type EventEncoder, type Publisher } from "./events.js";
import type { ProcessWatcher } from "./launcher.js";
import type { ExitRecord } from "./monitor.js";
import { toTimestamp, type Proc } from "./process.js";
import { type Task, taskLog } from "./task.js";

type Ev<T> = [string, EventEncoder<T>, T];

export class TaskEvents implements ProcessWatcher {
  constructor(
    private readonly publisher: Publisher,
    private readonly shimLog: (msg: string) => void,
  ) {}

  publish<T>(task: Task, topic: string, [typeName, codec, event]: Ev<T>): void {
    this.publisher.publish(task.namespace, topic, typeName, codec, event);
  }

  log(task: Task, msg: string): void {
    taskLog(task, this.shimLog, msg);
  }

  oom(task: Task): void {
    this.log(task, "OOM");
    this.publish(task, Topics.oom, ["containerd.events.TaskOOM", TaskOOM, { containerId: task.id }]);
  }

  async exited(task: Task, proc: Proc, e: ExitRecord): Promise<void> {
    if (proc.starting) await proc.starting.catch(() => {});
    if (proc.exit) return;
    proc.setExited(e);
    // An exec's exit is its caller's answer (Wait, TaskExit); only the init's goes to the log.
    if (!proc.execId) this.log(task, `init pid ${proc.pid} exited with status ${e.status}`);
    // An exit that happened while no shim was serving is published by the shim that
    // re-adopts it; the marker keeps a restarted shim from publishing it twice. Checked and
    // written synchronously (a small file in the state dir): two thread-pool round trips held
    // every TaskExit, and with it StopContainer, behind whatever else the pool was doing.
    const marker = join(proc.stateDir, "exit-published");
    if (existsSync(marker)) return;
    try {
      writeFileSync(marker, "");
    } catch {
      // the state dir is gone (deleted meanwhile): publish anyway
    }
    this.publish(task, Topics.exit, [
      "containerd.events.TaskExit",
      TaskExit,
      {
        containerId: task.id,
        id: proc.execId || task.id,
        pid: proc.pid,
        exitStatus: e.status,
        exitedAt: toTimestamp(e),
      },
    ]);
  }
}
