// Where CRI stats and metrics read a container's and a pod's usage: the task's cgroup metrics
// (asked of its shim), its first process (pid), the pod cgroup (kubelet's cgroup parent, or
// berth's own /berth/<podId>) and the unified-hierarchy directories PSI is read from.
// ContainerStats/PodSandboxStats (stats.ts) and ListPodSandboxMetrics (metrics.ts) share it,
// so both report the same figures from the same files.
import type { ImageService } from "../../images/service.js";
import { type CgroupDriver, podCgroupParent } from "../../oci/index.js";
import type { TaskRuntime, TaskStats } from "../../runtime/index.js";
import type { Bundles } from "../bundle.js";
import { CRI_NAMESPACE as NS } from "../context.js";
import type { ContainerStore, SandboxEntry, SandboxStore } from "../store/index.js";
import { cgroupMounts, type CgroupMount } from "../pod-cgroup.js";
import { cgroupDirsOf, unifiedDir } from "./cgroup-files.js";
import { psiFromV2, readPressure, type Pressure } from "./pressure.js";

export interface UsageDeps {
  containers: ContainerStore;
  pods: SandboxStore;
  runtime: Pick<TaskRuntime, "has" | "stats" | "state">;
  images: Pick<ImageService, "snapshotter" | "opts">;
  bundles: Bundles;
  cgroupDriver: CgroupDriver;
}

export class UsageSources {
  private mountsCache: CgroupMount[] | undefined;
  constructor(readonly deps: UsageDeps) {}

  /** The cgroup hierarchies mounted here, read once (they do not move while berthd runs). */
  get mounts(): CgroupMount[] {
    return (this.mountsCache ??= cgroupMounts());
  }

  /** The task's cgroup metrics; undefined when it has no task or its shim does not answer. */
  async taskStats(id: string): Promise<TaskStats | undefined> {
    if (!this.deps.runtime.has(NS, id)) return undefined;
    return this.deps.runtime.stats(NS, id).catch(() => undefined);
  }

  /** The pid of the task's first process while it runs, else 0. */
  async pid(id: string): Promise<number> {
    if (!this.deps.runtime.has(NS, id)) return 0;
    const s = await this.deps.runtime.state(NS, id).catch(() => undefined);
    return s?.status === "running" ? s.pid : 0;
  }

  /**
   * The pod cgroup's path (cgroupfs driver only: a systemd slice name is not a path), when
   * the pod's tasks are nested in it. undefined otherwise.
   */
  podCgroupPath(row: SandboxEntry): string | undefined {
    if (this.deps.cgroupDriver === "systemd") return undefined;
    const config = row.config;
    const parent = podCgroupParent(config.linux?.cgroupParent, row.id, this.deps.cgroupDriver);
    if (!parent || parent.endsWith(".slice")) return undefined;
    // A pod run before berth made pod cgroups has its sandbox's own leaf at /berth/<podId>.
    if (!config.linux?.cgroupParent) {
      const leaf = this.deps.bundles.tryReadSpec(row.id)?.linux.cgroupsPath ?? "";
      if (!leaf.startsWith(`${parent}/`)) return undefined;
    }
    return parent;
  }

  /** A container's PSI: from its v2 metrics, else from its unified cgroup's files (hybrid hosts). */
  async containerPressure(id: string, stats: TaskStats | undefined): Promise<Pressure> {
    const v2 = stats?.v2;
    if (v2?.cpu?.psi || v2?.memory?.psi || v2?.io?.psi) {
      return { cpu: psiFromV2(v2.cpu?.psi), memory: psiFromV2(v2.memory?.psi), io: psiFromV2(v2.io?.psi) };
    }
    if (!this.mounts.some((m) => m.v2)) return {};
    const pid = await this.pid(id);
    return pid > 0 ? readPressure((await cgroupDirsOf(pid, this.mounts)).unified) : {};
  }

  async podPressure(row: SandboxEntry): Promise<Pressure> {
    const path = this.podCgroupPath(row);
    return path ? readPressure(unifiedDir(path, this.mounts)) : {};
  }
}
