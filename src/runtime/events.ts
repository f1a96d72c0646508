// Task events from shims: the ttrpc server shims publish to (containerd's
// containerd.services.events.ttrpc.v1.Events/Forward on the TTRPC_ADDRESS socket), and the
// typed events the manager hands to its subscribers (later: CRI container state and
// GetContainerEvents). Events are notifications, not truth: after a restart the manager asks
// the shims for State, and a shim retries events it could not deliver for a while.
import { mkdir } from "node:fs/promises";
import { dirname } from "node:path";

import {
  TaskCheckpointed,
  TaskCreate,
  TaskDelete,
  TaskExecAdded,
  TaskExecStarted,
  TaskExit,
  TaskOOM,
  TaskPaused,
  TaskResumed,
  TaskStart,
} from "../gen/containerd/events/task.js";
import { type Envelope, EventsDefinition } from "../gen/containerd/services/ttrpc/events/v1/events.js";
import type { Timestamp } from "../gen/google/protobuf/timestamp.js";
import { TtrpcServer } from "../ttrpc/index.js";
import type { Logger } from "../util/log.js";

interface EventBase {
  /** containerd namespace the shim published under. */
  namespace: string;
  /** containerd topic, e.g. "/tasks/exit". */
  topic: string;
  /** When the shim published it (or when the manager synthesised it). */
  timestamp: Date;
  containerId: string;
}

export interface TaskCreateEvent extends EventBase {
  type: "create";
  bundle: string;
  pid: number;
}
export interface TaskStartEvent extends EventBase {
  type: "start";
  pid: number;
}
/**
 * A process exited. `execId` is "" for the task's init process. `reason` is set only when
 * the manager itself reports the exit because the shim is gone (then `exitStatus` is 255).
 */
export interface TaskExitEvent extends EventBase {
  type: "exit";
  execId: string;
  pid: number;
  exitStatus: number;
  exitedAt: Date;
  reason?: string;
}
export interface TaskOOMEvent extends EventBase {
  type: "oom";
}
export interface TaskExecAddedEvent extends EventBase {
  type: "exec-added";
  execId: string;
}
export interface TaskExecStartedEvent extends EventBase {
  type: "exec-started";
  execId: string;
  pid: number;
}
export interface TaskPausedEvent extends EventBase {
  type: "paused";
}
export interface TaskResumedEvent extends EventBase {
  type: "resumed";
}
/** A task or exec process was deleted; `execId` is "" for the task itself. */
export interface TaskDeleteEvent extends EventBase {
  type: "delete";
  execId: string;
  pid: number;
  exitStatus: number;
  exitedAt: Date;
}
export interface TaskCheckpointedEvent extends EventBase {
  type: "checkpointed";
  checkpoint: string;
}
/** An event of a type the manager does not know; kept so nothing is silently dropped. */
export interface UnknownEvent {
  type: "unknown";
  namespace: string;
  topic: string;
  timestamp: Date;
  typeUrl: string;
  value: Buffer;
}

export type RuntimeEvent =
  | TaskCreateEvent
  | TaskStartEvent
  | TaskExitEvent
  | TaskOOMEvent
  | TaskExecAddedEvent
  | TaskExecStartedEvent
  | TaskPausedEvent
  | TaskResumedEvent
  | TaskDeleteEvent
  | TaskCheckpointedEvent
  | UnknownEvent;

export type EventListener = (event: RuntimeEvent) => void;

export function timestampToDate(ts: Timestamp | undefined): Date {
  if (!ts) return new Date(0);
  return new Date(Number(ts.seconds) * 1000 + Math.floor(ts.nanos / 1e6));
}

/** For exits and deletes containerd puts the container id in `id` for the init process. */
function execIdOf(containerId: string, id: string): string {
  return id === containerId ? "" : id;
}

/** Turns a forwarded envelope into a typed event, by the Any's message name. */
export function decodeEnvelope(env: Envelope): RuntimeEvent {
  const base = { namespace: env.namespace, topic: env.topic, timestamp: timestampToDate(env.timestamp) };
  const typeUrl = env.event?.typeUrl ?? "";
  const value = env.event?.value ?? Buffer.alloc(0);
  // typeurl names events by their protobuf name; accept a type.googleapis.com/ style prefix too.
  const name = typeUrl.slice(typeUrl.lastIndexOf("/") + 1);
  switch (name) {
    case "containerd.events.TaskCreate": {
      const e = TaskCreate.decode(value);
      return { ...base, type: "create", containerId: e.containerId, bundle: e.bundle, pid: e.pid };
    }
    case "containerd.events.TaskStart": {
      const e = TaskStart.decode(value);
      return { ...base, type: "start", containerId: e.containerId, pid: e.pid };
    }
    case "containerd.events.TaskExit": {
      const e = TaskExit.decode(value);
      return {
        ...base,
        type: "exit",
        containerId: e.containerId,
        execId: execIdOf(e.containerId, e.id),
        pid: e.pid,
        exitStatus: e.exitStatus,
        exitedAt: timestampToDate(e.exitedAt),
      };
    }
    case "containerd.events.TaskOOM":
      return { ...base, type: "oom", containerId: TaskOOM.decode(value).containerId };
    case "containerd.events.TaskExecAdded": {
      const e = TaskExecAdded.decode(value);
      return { ...base, type: "exec-added", containerId: e.containerId, execId: e.execId };
    }
    case "containerd.events.TaskExecStarted": {
      const e = TaskExecStarted.decode(value);
      return { ...base, type: "exec-started", containerId: e.containerId, execId: e.execId, pid: e.pid };
    }
    case "containerd.events.TaskPaused":
      return { ...base, type: "paused", containerId: TaskPaused.decode(value).containerId };
    case "containerd.events.TaskResumed":
      return { ...base, type: "resumed", containerId: TaskResumed.decode(value).containerId };
    case "containerd.events.TaskDelete": {
      const e = TaskDelete.decode(value);
      return {
        ...base,
        type: "delete",
        containerId: e.containerId,
        execId: execIdOf(e.containerId, e.id),
        pid: e.pid,
        exitStatus: e.exitStatus,
        exitedAt: timestampToDate(e.exitedAt),
      };
    }
    case "containerd.events.TaskCheckpointed": {
      const e = TaskCheckpointed.decode(value);
      return { ...base, type: "checkpointed", containerId: e.containerId, checkpoint: e.checkpoint };
    }
    default:
      return { ...base, type: "unknown", typeUrl, value: Buffer.from(value) };
  }
}

/** Fan-out to subscribers; a throwing subscriber is logged and does not stop the others. */
export class EventHub {
  private readonly listeners = new Set<EventListener>();

  constructor(private readonly log: Logger) {}

  /** Subscribes; returns the function that unsubscribes. */
  subscribe(fn: EventListener): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  emit(event: RuntimeEvent): void {
    for (const fn of [...this.listeners]) {
      try {
        fn(event);
      } catch (err) {
        this.log.error({ err, topic: event.topic }, "runtime event subscriber threw");
      }
    }
  }
}

/** The Events/Forward ttrpc server shims publish to. */
export class EventsServer {
  private readonly server: TtrpcServer;

  constructor(
    private readonly onEnvelope: (env: Envelope) => void,
    log: Logger,
  ) {
    this.server = new TtrpcServer({ logger: log });
    this.server.register(EventsDefinition, {
      forward: (req) => {
        if (req.envelope) this.onEnvelope(req.envelope);
        return {};
      },
    });
  }

  /** Listens on a filesystem socket with mode 0600 (its directory is created 0700). */
  async listen(path: string): Promise<void> {
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    await this.server.listen(path, { mode: 0o600 });
  }

  get path(): string | undefined {
    return this.server.path;
  }

  close(): Promise<void> {
    return this.server.close({ timeoutMs: 2000 });
  }
}
