// The shim's model of a task's processes (the init process and its execs): live state
// comes from the process's monitor; what is needed to re-adopt it after a shim restart is
// kept in <stateDir>/record.json, written atomically.
import { mkdirSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";

import type { Status } from "../gen/containerd/types/task/task.js";
import type { Timestamp } from "../gen/google/protobuf/timestamp.js";
import { writeFileAtomicSync } from "../util/atomic-write.js";
import type { ExitRecord, Monitor } from "./monitor.js";
import { type ProcessEvent, type ProcessKind, type ProcessState, next, statusOf, transition } from "./process-state.js";
import type { RuntimeConfig } from "./runtime.js";

export interface MountRecord {
  type: string;
  source: string;
  target: string;
  options: string[];
}

export interface ProcessRecord {
  namespace: string;
  id: string;
  /** "" for the init process */
  execId: string;
  bundle: string;
  stdin: string;
  stdout: string;
  stderr: string;
  terminal: boolean;
  runtime: RuntimeConfig;
  /** init only: the rootfs mounts we made on <bundle>/rootfs */
  rootfs: MountRecord[];
  /** init only: restore from this checkpoint image on Start */
  checkpoint: string;
  pid: number;
  started: boolean;
  /** init only: a runsc sub-container (runsc.ts), started through a waiter rather than `runsc start`. */
  runscSubcontainer?: boolean;
  /**
   * init only: Create already ran the process (`runc run --detach`, asked for by berthd's
   * start-at-once metadata); the first Start only confirms it (service.ts).
   */
  startedAtCreate?: boolean;
  /**
   * init only, with startedAtCreate: a Kill before the confirming Start let the exit through
   * (Proc.releaseBeforeStart), so a shim that re-adopts the process does not hold it again.
   */
  exitBeforeStart?: boolean;
}

/**
 * Writes the record atomically (a temp file renamed over it), synchronously and without
 * fsync. It exists so that a restarted shim can re-adopt processes that are still running;
 * after a power loss or kernel crash none are, so durability would buy nothing, while the
 * rename keeps a crash of the shim from leaving half a record. Written with fsync through
 * the thread pool it cost 9 round trips, and 10-25 ms of every Create and Start at load 19.
 */
export async function saveRecord(stateDir: string, r: ProcessRecord): Promise<void> {
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  writeFileAtomicSync(join(stateDir, "record.json"), JSON.stringify(r), 0o600, { durable: false });
}

export async function loadRecord(stateDir: string): Promise<ProcessRecord | undefined> {
  try {
    return JSON.parse(await readFile(join(stateDir, "record.json"), "utf8")) as ProcessRecord;
  } catch {
    return undefined;
  }
}

export function toTimestamp(e: ExitRecord | undefined): Timestamp | undefined {
  return e ? { seconds: e.seconds, nanos: e.nanos } : undefined;
}

export class Proc {
  private current: ProcessState = "created";
  monitor: Monitor | undefined;
  exit: ExitRecord | undefined;
  /** Set while Start runs, so an exit is published only after the start event. */
  starting: Promise<unknown> | undefined;
  /** Lets the exits held since Create through (holdUntilStart). */
  private openGate: (() => void) | undefined;
  private waiters: ((e: ExitRecord) => void)[] = [];

  constructor(
    readonly record: ProcessRecord,
    readonly stateDir: string,
  ) {}

  get id(): string {
    return this.record.id;
  }
  get execId(): string {
    return this.record.execId;
  }
  get pid(): number {
    return this.record.pid;
  }
  get kind(): ProcessKind {
    return this.record.execId ? "exec" : "init";
  }
  /** Where the process is in its life (process-state.ts). */
  get state(): ProcessState {
    return this.current;
  }
  /** The state as containerd's task Status. */
  get status(): Status {
    return statusOf(this.current);
  }

  /** Whether the state table allows `event` now. */
  can(event: ProcessEvent): boolean {
    return transition(this.kind, this.current, event) !== undefined;
  }

  /** Moves the process on by `event`; throws FailedPreconditionError if the table refuses it. */
  to(event: ProcessEvent): void {
    this.current = next(this.kind, this.current, event);
  }

  /**
   * A process Create already ran looks created until its Start confirms it: its exit, which
   * may come at once, is held (through `starting`) until that Start published TaskStart, or
   * until the gate is opened otherwise (a Kill or Delete of the unconfirmed task).
   */
  holdUntilStart(): void {
    if (this.openGate) return;
    this.starting = new Promise<void>((resolve) => (this.openGate = resolve));
  }

  /** Whether Create ran the process (the record says so) and no Start has confirmed it yet. */
  get awaitingStart(): boolean {
    return !this.record.execId && !!this.record.startedAtCreate && !this.record.started;
  }

  /** Lets a held exit through (holdUntilStart). */
  openStartGate(): void {
    const open = this.openGate;
    this.openGate = undefined;
    open?.();
  }

  /**
   * A Kill of the task before its confirming Start: from now on its exit is told at once, as a
   * created task's is. Written to the record before the gate opens, so that a shim restarted
   * after the exit was told never holds it again (start-at-once.ts, holdAfterRestart).
   */
  async releaseBeforeStart(): Promise<void> {
    try {
      if (this.awaitingStart && !this.record.exitBeforeStart) {
        this.record.exitBeforeStart = true;
        await this.save();
      }
    } finally {
      // this shim tells the exit even if the record could not be written
      this.openStartGate();
    }
  }

  save(): Promise<void> {
    return saveRecord(this.stateDir, this.record);
  }

  setExited(e: ExitRecord): void {
    if (this.exit) return;
    this.exit = e;
    // Every live state ends in stopped; a deleted process stays deleted.
    if (this.can("exit")) this.to("exit");
    for (const w of this.waiters.splice(0)) w(e);
  }

  wait(): Promise<ExitRecord> {
    if (this.exit) return Promise.resolve(this.exit);
    return new Promise((resolve) => this.waiters.push(resolve));
  }
}
