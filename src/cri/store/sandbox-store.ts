// The CRI's one record of every pod sandbox: its durable facts (the metadata row) and its
// status (sandbox-status.ts). Every status change goes through apply(), which runs the pure
// transition and persists the durable part through the metadata store.
import {
  type PodSandbox,
  PodSandboxConfig,
  type PodSandboxStatus as CriPodSandboxStatus,
} from "../../gen/cri/runtime/v1/api.js";
import type { PodMetadata, PodRow } from "../../metadata/pods.js";
import { NotFoundError } from "../../util/errors.js";
import { resolveId } from "../ids.js";
import { type SandboxEvent, type SandboxStatus, initialSandboxStatus, sandboxTransition } from "./sandbox-status.js";

/** A pod's facts (its row without the status columns); the network is set once during RunPodSandbox. */
export type SandboxInfo = Readonly<Omit<PodRow, "phase" | "sandboxExitedAt">>;

export interface SandboxEntry {
  readonly id: string;
  readonly info: SandboxInfo;
  readonly status: SandboxStatus;
  readonly config: PodSandboxConfig;
  /**
   * The sandbox process's pid while it runs, 0 when berthd has not learnt it (not started yet,
   * or its shim did not answer at recovery). Not durable: RunPodSandbox sets it from the
   * task's start and recovery from the shim's state, so CreateContainer can name the pod's
   * namespaces (/proc/PID/ns/...) without a call to the shim.
   */
  readonly pid: number;
  /**
   * Its ListPodSandbox item (sandbox/list.ts), valid while `config` and `info` are still the
   * entry's and the item's state is the pod's: shared by every list, never changed.
   */
  listed?: SandboxListed;
  /**
   * Its PodSandboxStatus message (sandbox/status.ts), valid while `status`, `config` and
   * `info` are still the entry's: never changed.
   */
  statusMessage?: SandboxStatusMessage;
}

type SandboxListed = { config: PodSandboxConfig; info: SandboxInfo; item: PodSandbox };
type SandboxStatusMessage = {
  status: SandboxStatus;
  config: PodSandboxConfig;
  info: SandboxInfo;
  message: CriPodSandboxStatus;
};

interface MutableEntry {
  id: string;
  info: SandboxInfo;
  status: SandboxStatus;
  pid: number;
  configCache?: PodSandboxConfig;
  readonly config: PodSandboxConfig;
  listed?: SandboxListed;
  statusMessage?: SandboxStatusMessage;
}

function entryOf(row: PodRow): MutableEntry {
  const { phase: _p, sandboxExitedAt: _x, ...info } = row;
  return {
    id: row.id,
    info,
    status: initialSandboxStatus(row),
    pid: 0,
    get config() {
      return (this.configCache ??= PodSandboxConfig.decode(row.config));
    },
  };
}

export class SandboxStore {
  private entries: Map<string, MutableEntry> | undefined;

  constructor(private readonly meta: PodMetadata) {}

  private table(): Map<string, MutableEntry> {
    if (!this.entries) {
      this.entries = new Map();
      for (const row of this.meta.list()) this.entries.set(row.id, entryOf(row));
    }
    return this.entries;
  }

  get(id: string): SandboxEntry | undefined {
    return this.table().get(id);
  }

  /** The pod `ref` (a full id or a unique prefix) names; NotFoundError otherwise. */
  resolve(ref: string): SandboxEntry {
    const id = resolveId(ref, "pod sandbox", this.table());
    return this.table().get(id)!;
  }

  list(): SandboxEntry[] {
    return [...this.table().values()];
  }

  insert(row: Omit<PodRow, "phase" | "sandboxExitedAt">): SandboxEntry {
    const full: PodRow = { ...row, phase: "creating", sandboxExitedAt: 0n };
    this.meta.insert(full);
    const e = entryOf(full);
    this.table().set(row.id, e);
    return e;
  }

  /** Records the pod's network namespace and IPs (RunPodSandbox, once CNI answered). */
  setNetwork(id: string, netnsPath: string, ips: string[]): void {
    const e = this.table().get(id);
    if (!e) throw new NotFoundError(`pod sandbox ${id} not found`);
    this.meta.setNetwork(id, netnsPath, ips);
    e.info = { ...e.info, netnsPath, ips: [...ips] };
  }

  /** Notes the running sandbox process's pid (see SandboxEntry.pid). */
  setPid(id: string, pid: number): void {
    const e = this.table().get(id);
    if (e) e.pid = pid;
  }

  /** Applies `ev` to the pod's status, persisting what changed; undefined when the pod is gone. */
  apply(id: string, ev: SandboxEvent): SandboxStatus | undefined {
    const e = this.table().get(id);
    if (!e) return undefined;
    const before = e.status;
    const after = sandboxTransition(before, ev);
    if (after === before) return before;
    if (after.phase !== before.phase) this.meta.setPhase(id, after.phase);
    if (after.exitedAt !== before.exitedAt) this.meta.setSandboxExited(id, after.exitedAt);
    e.status = after;
    return after;
  }

  delete(id: string): void {
    this.meta.delete(id);
    this.table().delete(id);
  }
}
