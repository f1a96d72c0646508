// Fakes for unit tests of the CRI layer: a TaskRuntime whose tasks are plain records the test
// changes, and the deps of the container and sandbox operations over an in-memory metadata
// database and a temporary state dir. No shim, runc or root involved.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ContainerConfig, type ContainerEventResponse, PodSandboxConfig } from "../../../src/gen/cri/runtime/v1/api.js";
import { ContainerMetadata } from "../../../src/metadata/containers.js";
import { openDatabase } from "../../../src/metadata/db.js";
import { PodMetadata } from "../../../src/metadata/pods.js";
import type { RuntimeEvent, TaskState } from "../../../src/runtime/index.js";
import { Trash } from "../../../src/cri/trash.js";
import { Bundles } from "../../../src/cri/bundle.js";
import type { ContainerDeps } from "../../../src/cri/container/deps.js";
import { CRI_NAMESPACE, KeyedLock } from "../../../src/cri/context.js";
import type { ContainerLogger } from "../../../src/cri/io/container-logger.js";
import { RetryScheduler } from "../../../src/cri/retry.js";
import type { SandboxDeps } from "../../../src/cri/sandbox/deps.js";
import { sandboxStatusById } from "../../../src/cri/sandbox/status.js";
import { ContainerStore, SandboxStore } from "../../../src/cri/store/index.js";
import type { TaskRuntime } from "../../../src/runtime/index.js";
import { NotFoundError, UnavailableError } from "../../../src/util/errors.js";
import { silentLogger } from "../../../src/util/log.js";

export interface FakeTask {
  status: TaskState["status"];
  pid: number;
  exitStatus: number;
  exitedAt?: Date;
  /** Set when the runtime, not the shim, decides (the shim is gone). */
  reason?: string;
  /** state() fails as an unanswering shim does. */
  silent?: boolean;
}

/** A TaskRuntime over records the test sets; every call is logged in `calls`. */
export class FakeRuntime {
  readonly tasks = new Map<string, FakeTask>();
  readonly calls: string[] = [];
  private readonly listeners = new Set<(e: RuntimeEvent) => void>();

  onEvent(fn: (e: RuntimeEvent) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Delivers an event as the shim manager would. */
  emit(e: Partial<RuntimeEvent> & { type: RuntimeEvent["type"]; containerId: string }): void {
    const ev = { namespace: CRI_NAMESPACE, topic: "", timestamp: new Date(), execId: "", ...e } as RuntimeEvent;
    for (const l of this.listeners) l(ev);
  }

  has(_ns: string, id: string): boolean {
    return this.tasks.has(id);
  }

  record(): undefined {
    return undefined;
  }

  list(): [] {
    return [];
  }

  async state(_ns: string, id: string): Promise<TaskState> {
    this.calls.push(`state ${id}`);
    const t = this.tasks.get(id);
    if (!t) throw new NotFoundError(`task ${id} not found`);
    if (t.silent) throw new UnavailableError(`the shim of ${id} does not answer`);
    return {
      id,
      execId: "",
      bundle: "",
      pid: t.pid,
      status: t.status,
      stdin: "",
      stdout: "",
      stderr: "",
      terminal: false,
      exitStatus: t.exitStatus,
      exitedAt: t.exitedAt,
      reason: t.reason,
    };
  }

  async delete(_ns: string, id: string) {
    this.calls.push(`delete ${id}`);
    const t = this.tasks.get(id);
    if (!t) throw new NotFoundError(`task ${id} not found`);
    this.tasks.delete(id);
    return { pid: t.pid, exitStatus: t.exitStatus, exitedAt: t.exitedAt ?? new Date(), reason: t.reason };
  }

  async kill(_ns: string, id: string, signal: number): Promise<void> {
    this.calls.push(`kill ${id} ${signal}`);
  }

  async wait(_ns: string, id: string) {
    this.calls.push(`wait ${id}`);
    const t = this.tasks.get(id);
    if (!t) throw new NotFoundError(`task ${id} not found`);
    return { pid: t.pid, exitStatus: t.exitStatus, exitedAt: t.exitedAt ?? new Date() };
  }

  asTaskRuntime(): TaskRuntime {
    return this as unknown as TaskRuntime;
  }
}

/** A log pump whose end the test decides: drain() ends its output, closed() tells whether it was closed. */
export interface FakeLogger {
  logger: ContainerLogger;
  drain(): void;
  closed(): boolean;
}

export function fakeLogger(): FakeLogger {
  let drain!: () => void;
  let closed = false;
  const done = new Promise<void>((r) => (drain = r));
  const logger = {
    done,
    close: () => void (closed = true),
    reopen() {},
  } as unknown as ContainerLogger;
  return { logger, drain: () => drain(), closed: () => closed };
}

export interface World {
  runtime: FakeRuntime;
  containers: ContainerDeps;
  sandboxes: SandboxDeps;
  events: ContainerEventResponse[];
  /** The metadata database under the stores (in memory). */
  db: ReturnType<typeof openDatabase>;
  close(): void;
}

/** Container and sandbox deps over fakes; close() removes the temporary state dir. */
export function world(): World {
  const dir = mkdtempSync(join(tmpdir(), "berth-unit-"));
  const db = openDatabase(":memory:");
  const runtime = new FakeRuntime();
  const bundles = new Bundles(dir);
  const events: ContainerEventResponse[] = [];
  const sandboxStore = new SandboxStore(new PodMetadata(db));
  const log = silentLogger();
  const containers: ContainerDeps = {
    store: new ContainerStore(new ContainerMetadata(db)),
    sandboxes: sandboxStore,
    runtime: runtime.asTaskRuntime(),
    images: {
      resolveId: () => undefined,
      status: async () => undefined,
      prepareRootfs: async () => [],
      removeRootfs: async () => {},
      forgetRootfs: () => undefined,
      snapshotter: { name: "fake" },
    } as unknown as ContainerDeps["images"],
    bundles,
    trash: new Trash(join(dir, "trash"), log),
    events: { publish: (e) => events.push(e) },
    podStatus: async (id) => sandboxStatusById({ store: sandboxStore }, id),
    lock: new KeyedLock(),
    retries: new RetryScheduler(),
    log,
    cgroupDriver: "cgroupfs",
  };
  const sandboxes: SandboxDeps = {
    store: sandboxStore,
    containers,
    runtime: runtime.asTaskRuntime(),
    network: { setupPod: async () => ({ netnsPath: "", ips: [] }), teardownPod: async () => {} } as never,
    runtimeClasses: { get: () => ({ name: "runc" }), names: () => ["runc"] },
    bundles,
    events: { publish: (e) => events.push(e) },
    lock: new KeyedLock(),
    retries: new RetryScheduler(),
    log,
    cgroupDriver: "cgroupfs",
    sandboxRootfs: dir,
  };
  return {
    runtime,
    containers,
    sandboxes,
    events,
    db,
    close() {
      for (const e of containers.store.list()) e.io?.close();
      containers.retries.close();
      sandboxes.retries.close();
      db.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

let seq = 0;

/** A ready pod with a running sandbox task. */
export function addPod(w: World): string {
  const id = `pod${++seq}`.padEnd(64, "0");
  w.sandboxes.store.insert({
    id,
    name: "p",
    namespace: "default",
    uid: "u",
    attempt: 0,
    config: Buffer.from(PodSandboxConfig.encode(PodSandboxConfig.fromPartial({ metadata: { name: "p" } })).finish()),
    createdAt: 1n,
    runtimeHandler: "runc",
    netnsPath: "",
    ips: [],
    podDir: "/nonexistent",
  });
  w.sandboxes.store.apply(id, { type: "ready" });
  w.runtime.tasks.set(id, { status: "running", pid: 100, exitStatus: 0 });
  return id;
}

/** Container `id` of pod `podId` in the store, created (no task, nothing on disk). */
export function addCreatedContainer(w: World, podId: string, id: string, name = id.slice(0, 8)): void {
  w.containers.store.insert({
    id,
    sandboxId: podId,
    name,
    attempt: 0,
    config: Buffer.from(ContainerConfig.encode(ContainerConfig.fromPartial({ metadata: { name: "c" } })).finish()),
    imageRef: "img",
    imageId: "sha256:img",
    logPath: "",
    stopSignal: "SIGTERM",
    createdAt: 1n,
  });
  w.containers.store.apply(id, { type: "created" });
}

/** A started container with a running task and a log pump the test drains. */
export function addRunningContainer(w: World, podId: string) {
  const id = `ctr${++seq}`.padEnd(64, "0");
  addCreatedContainer(w, podId, id, `c${seq}`);
  w.containers.store.apply(id, { type: "started", at: 2n });
  w.runtime.tasks.set(id, { status: "running", pid: 200, exitStatus: 0 });
  const logger = fakeLogger();
  w.containers.store.get(id)!.io = logger.logger;
  return { id, logger };
}

/**
 * Lets pending promise callbacks and timers of 0 ms run. Only for checking that something did
 * NOT happen yet: exit handling does real I/O (a cgroup read, an unmount on the thread pool),
 * so what must have happened is waited for with exitHandled (or helpers/shim.ts until), never a sleep.
 */
export function settle(): Promise<void> {
  return new Promise((r) => setTimeout(r, 5));
}

/** Waits until the container's exit handling (handleContainerExit: drain, delete, unmount, event) has ended. */
export async function exitHandled(w: World, id: string): Promise<void> {
  await settle();
  await w.containers.store.get(id)?.exiting;
}
