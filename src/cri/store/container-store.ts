// The CRI's one record of every container: its durable facts (the metadata row), its status
// (container-status.ts) and what berthd holds for it while it lives (the log pump, the exit
// handling in flight, decoded config and user). Every status change goes through apply(),
// which runs the pure transition and persists the durable part through the metadata store:
// the one place a container's row changes after it is inserted.
import {
  type Container,
  ContainerConfig,
  type ContainerStatus as CriContainerStatus,
} from "../../gen/cri/runtime/v1/api.js";
import type { ContainerMetadata, ContainerRow } from "../../metadata/containers.js";
import { resolveId } from "../ids.js";
import type { ContainerLogger } from "../io/container-logger.js";
import {
  type ContainerEvent,
  type ContainerStatus,
  containerTransition,
  initialContainerStatus,
} from "./container-status.js";

/** A container's facts fixed at create (its row without the status columns). */
export type ContainerInfo = Readonly<Omit<ContainerRow, "phase" | "startedAt" | "exit">>;

export interface ContainerEntry {
  readonly id: string;
  readonly info: ContainerInfo;
  /** Only the store assigns it (apply). */
  readonly status: ContainerStatus;
  /** The CRI config, decoded once (UpdateContainerResources changes its resources). */
  readonly config: ContainerConfig;
  /** The process identity (from the OCI spec; fixed at create), read once. */
  user?: CriContainerStatus["user"];
  /**
   * ContainerStatus.image_ref (the image's repo digest, else its id), resolved at create or
   * on the first status after a restart, and kept while the image records stay as they were
   * (`generation`, ImageService.generation).
   */
  imageRef?: { generation: number; value: string };
  /**
   * Its ListContainers item (container/list.ts), valid while `config` and `info` are still the
   * entry's and the item's state is the container's: shared by every list, never changed.
   */
  listed?: { config: ContainerConfig; info: ContainerInfo; item: Container };
  /**
   * Its ContainerStatus message (container/status.ts), valid while the status, config,
   * image_ref, user and image records it was made of are still the entry's: never changed.
   */
  statusMessage?: {
    status: ContainerStatus;
    config: ContainerConfig;
    imageRef: string;
    user: CriContainerStatus["user"];
    generation: number;
    message: CriContainerStatus;
  };
  /** The log pump while the task exists. */
  io?: ContainerLogger;
  /** The exit handling in flight, so an exit is handled once whoever notices it first. */
  exiting?: Promise<void>;
}

interface MutableEntry extends Omit<ContainerEntry, "status" | "config"> {
  status: ContainerStatus;
  configCache?: ContainerConfig;
  readonly config: ContainerConfig;
}

function infoOf(row: ContainerRow): ContainerInfo {
  const { phase: _p, startedAt: _s, exit: _e, ...info } = row;
  return info;
}

function entryOf(row: ContainerRow): MutableEntry {
  const e: MutableEntry = {
    id: row.id,
    info: infoOf(row),
    status: initialContainerStatus(row),
    get config() {
      return (this.configCache ??= ContainerConfig.decode(row.config));
    },
  };
  return e;
}

export class ContainerStore {
  private entries: Map<string, MutableEntry> | undefined;
  /**
   * The entries of each pod, in insertion order: PodSandboxStatus (polled for every pod) reads
   * its pod's containers without a scan of every container of the node.
   */
  private readonly pods = new Map<string, Set<MutableEntry>>();

  constructor(private readonly meta: ContainerMetadata) {}

  /** Loaded from the metadata on first use (berthd start). */
  private table(): Map<string, MutableEntry> {
    if (!this.entries) {
      this.entries = new Map();
      for (const row of this.meta.list()) this.add(entryOf(row));
    }
    return this.entries;
  }

  private add(e: MutableEntry): void {
    this.entries!.set(e.id, e);
    let set = this.pods.get(e.info.sandboxId);
    if (!set) this.pods.set(e.info.sandboxId, (set = new Set()));
    set.add(e);
  }

  get(id: string): ContainerEntry | undefined {
    return this.table().get(id);
  }

  /** The entry `ref` (a full id or a unique prefix) names; NotFoundError otherwise. */
  resolve(ref: string): ContainerEntry {
    const id = resolveId(ref, "container", this.table());
    return this.table().get(id)!;
  }

  list(): ContainerEntry[] {
    return [...this.table().values()];
  }

  bySandbox(sandboxId: string): ContainerEntry[] {
    this.table();
    const set = this.pods.get(sandboxId);
    return set ? [...set] : [];
  }

  /** A new container (phase creating), persisted first. */
  insert(row: Omit<ContainerRow, "phase" | "startedAt" | "exit">): ContainerEntry {
    return this.insertWith(row, () => undefined, { synced: true }).entry;
  }

  /**
   * insert(), its row written in one transaction with what `alsoInTransaction` writes to the
   * same database (a record the container owns, such as its snapshot's): one commit, and
   * either both happen or neither. Returns the entry and what `alsoInTransaction` returns.
   *
   * Not synced by itself unless `synced`: CreateContainer always ends in a synced commit (the
   * container CREATED, or its undo deleting it), which syncs this one too, and a power cut
   * before that loses only a 'creating' record, whose files the start-up sweeps remove without
   * it (a snapshot dir no record names, a bundle under the state dir). A crash of berthd loses
   * nothing: the commit is in the WAL.
   */
  insertWith<T>(
    row: Omit<ContainerRow, "phase" | "startedAt" | "exit">,
    alsoInTransaction: () => T,
    opts: { synced?: boolean } = {},
  ): { entry: ContainerEntry; also: T } {
    const full: ContainerRow = { ...row, phase: "creating", startedAt: 0n, exit: undefined };
    const also = this.meta.transaction(
      () => {
        this.meta.insert(full);
        return alsoInTransaction();
      },
      { synced: opts.synced ?? false },
    );
    const e = entryOf(full);
    this.table();
    this.add(e);
    return { entry: e, also };
  }

  /**
   * Applies `ev` to the container's status, persisting what changed; the new status, or
   * undefined when the container is gone (an exit handled while it was being removed).
   */
  apply(id: string, ev: ContainerEvent): ContainerStatus | undefined {
    const e = this.table().get(id);
    if (!e) return undefined;
    const before = e.status;
    const after = containerTransition(before, ev);
    if (after === before) return before;
    // Persisted first: the status in memory never claims what a restart would not find.
    if (after.phase !== before.phase) this.meta.setPhase(id, after.phase);
    if (after.startedAt !== before.startedAt) this.meta.setStarted(id, after.startedAt);
    if (after.exit && after.exit !== before.exit) this.meta.setExit(id, after.exit);
    e.status = after;
    return after;
  }

  /**
   * Replaces the container's config (UpdateContainerResources changes its resources), persisted
   * so that ContainerStatus.resources reports the new values after a restart too.
   */
  setConfig(id: string, config: ContainerConfig): void {
    const e = this.table().get(id);
    if (!e) return;
    this.meta.setConfig(id, Buffer.from(ContainerConfig.encode(config).finish()));
    e.configCache = config;
  }

  /** Forgets the container (its row deleted). */
  delete(id: string): void {
    this.deleteWith(id, () => undefined);
  }

  /**
   * Forgets the container, its row deleted in one transaction with what `alsoInTransaction`
   * writes to the same database (a record the container owned, such as its snapshot's): one
   * commit, and either both happen or neither. Returns what `alsoInTransaction` returns.
   */
  deleteWith<T>(id: string, alsoInTransaction: () => T): T {
    const r = this.meta.transaction(() => {
      const out = alsoInTransaction();
      this.meta.delete(id);
      return out;
    });
    const e = this.table().get(id);
    e?.io?.close();
    this.table().delete(id);
    if (e) {
      const set = this.pods.get(e.info.sandboxId);
      set?.delete(e);
      if (set?.size === 0) this.pods.delete(e.info.sandboxId);
    }
    return r;
  }
}
