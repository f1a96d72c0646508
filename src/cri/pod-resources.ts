// In-place pod resize (UpdatePodSandboxResources, kubelet 1.33+): the pod cgroup's limits
// become the pod's resources plus its overhead, written to the pod cgroup in every hierarchy
// that has the controller (cgroup v1 files, or the unified ones). Values left 0 / empty in the
// request are left as they are, as UpdateContainerResources treats them.
//
// And ContainerConfig with updated resources (UpdateContainerResources), to be persisted so
// that ContainerStatus.resources reports the new values after a berthd restart.
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { ContainerConfig, LinuxContainerResources, PodSandboxConfig } from "../gen/cri/runtime/v1/api.js";
import type { PodRow } from "../metadata/pods.js";
import { podCgroupParent } from "../oci/index.js";
import { FailedPreconditionError, InvalidArgumentError } from "../util/errors.js";
import type { CriContext } from "./context.js";
import { cgroupMounts } from "./pod-cgroup.js";

/** One cgroup file write: `controller` "" means the unified (v2) hierarchy. */
export interface CgroupWrite {
  controller: string;
  file: string;
  value: string;
}

/** kubelet's shares -> cgroup v2 weight mapping (the one runc and crun use). */
export function sharesToWeight(shares: number): number {
  if (shares === 0) return 0;
  return 1 + Math.floor(((shares - 2) * 9999) / 262142);
}

/** The pod's total: its resources plus overhead (CPU quota over one period). */
export function podTotal(
  resources: LinuxContainerResources | undefined,
  overhead: LinuxContainerResources | undefined,
): LinuxContainerResources {
  if (!resources) throw new InvalidArgumentError("UpdatePodSandboxResources needs resources");
  const r = resources;
  const o = overhead;
  const num = (v: bigint | undefined) => Number(v ?? 0n);
  const period = num(r.cpuPeriod) || num(o?.cpuPeriod);
  // Overhead quota is rescaled to the pod's period when the two differ.
  const oQuota =
    o && num(o.cpuQuota) > 0 && num(o.cpuPeriod) > 0 && period > 0
      ? Math.round((num(o.cpuQuota) * period) / num(o.cpuPeriod))
      : num(o?.cpuQuota) > 0
        ? num(o?.cpuQuota)
        : 0;
  const add = (a: number, b: number) => (a > 0 ? a + Math.max(b, 0) : a);
  return {
    ...r,
    cpuPeriod: BigInt(period),
    cpuQuota: BigInt(add(num(r.cpuQuota), oQuota)),
    cpuShares: BigInt(add(num(r.cpuShares), num(o?.cpuShares))),
    memoryLimitInBytes: BigInt(add(num(r.memoryLimitInBytes), num(o?.memoryLimitInBytes))),
  };
}

/** The cgroup writes that set `r` on a cgroup, for v1 (`v2` false) or the unified hierarchy. */
export function cgroupWrites(r: LinuxContainerResources, v2: boolean): CgroupWrite[] {
  const out: CgroupWrite[] = [];
  const period = Number(r.cpuPeriod);
  const quota = Number(r.cpuQuota);
  const shares = Number(r.cpuShares);
  const mem = Number(r.memoryLimitInBytes);
  if (!v2) {
    // Period before quota: a quota is checked against the period in force.
    if (period > 0) out.push({ controller: "cpu", file: "cpu.cfs_period_us", value: String(period) });
    if (quota !== 0) out.push({ controller: "cpu", file: "cpu.cfs_quota_us", value: String(quota) });
    if (shares > 0) out.push({ controller: "cpu", file: "cpu.shares", value: String(shares) });
    if (mem > 0) out.push({ controller: "memory", file: "memory.limit_in_bytes", value: String(mem) });
    if (r.cpusetCpus) out.push({ controller: "cpuset", file: "cpuset.cpus", value: r.cpusetCpus });
    if (r.cpusetMems) out.push({ controller: "cpuset", file: "cpuset.mems", value: r.cpusetMems });
    for (const h of r.hugepageLimits ?? [])
      out.push({ controller: "hugetlb", file: `hugetlb.${h.pageSize}.limit_in_bytes`, value: String(h.limit) });
    if (Object.keys(r.unified ?? {}).length)
      throw new InvalidArgumentError("unified resources need cgroup v2; this host's pod cgroup is v1");
    return out;
  }
  if (quota !== 0 || period > 0)
    out.push({
      controller: "",
      file: "cpu.max",
      value: `${quota > 0 ? quota : "max"} ${period > 0 ? period : 100000}`,
    });
  if (shares > 0) out.push({ controller: "", file: "cpu.weight", value: String(sharesToWeight(shares)) });
  if (mem > 0) out.push({ controller: "", file: "memory.max", value: String(mem) });
  if (r.cpusetCpus) out.push({ controller: "", file: "cpuset.cpus", value: r.cpusetCpus });
  if (r.cpusetMems) out.push({ controller: "", file: "cpuset.mems", value: r.cpusetMems });
  for (const h of r.hugepageLimits ?? [])
    out.push({ controller: "", file: `hugetlb.${h.pageSize}.max`, value: String(h.limit) });
  for (const [k, v] of Object.entries(r.unified ?? {})) out.push({ controller: "", file: k, value: v });
  return out;
}

/**
 * Writes the pod's limits to its cgroup at `path` (cgroupfs path, e.g. /berth/<pod> or the
 * parent kubelet gave). v1 controllers where the host has them, else the unified hierarchy.
 * A missing pod cgroup or a refused value is FAILED_PRECONDITION naming the file.
 */
export async function applyPodCgroupLimits(
  path: string,
  r: LinuxContainerResources,
  mounts = cgroupMounts(),
): Promise<void> {
  const v1 = mounts.filter((m) => !m.v2);
  const unified = mounts.find((m) => m.v2);
  const useV1 = v1.some((m) => m.controllers.includes("memory"));
  for (const w of cgroupWrites(r, !useV1)) {
    const mount = w.controller ? v1.find((m) => m.controllers.includes(w.controller)) : unified;
    if (!mount) throw new FailedPreconditionError(`no ${w.controller || "unified"} cgroup hierarchy for ${w.file}`);
    const file = join(mount.mountpoint, path, w.file);
    try {
      await writeFile(file, w.value);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOENT") throw new FailedPreconditionError(`pod cgroup ${path} has no ${file}`);
      throw new FailedPreconditionError(`writing ${w.value} to ${file}: ${(err as Error).message}`);
    }
  }
}

/** The config with `resources` as its Linux resources (what ContainerStatus.resources reports). */
export function withResources(config: ContainerConfig, resources: LinuxContainerResources): ContainerConfig {
  return { ...config, linux: { ...(config.linux ?? { securityContext: undefined }), resources } } as ContainerConfig;
}

/** UpdatePodSandboxResources: the pod must be ready and have a cgroupfs pod cgroup. */
export async function updatePodResources(
  ctx: Pick<CriContext, "cgroupDriver">,
  row: PodRow,
  config: PodSandboxConfig,
  resources: LinuxContainerResources | undefined,
  overhead: LinuxContainerResources | undefined,
  mounts = cgroupMounts(),
): Promise<void> {
  if (row.phase !== "ready") throw new FailedPreconditionError(`pod sandbox ${row.id} is not ready (${row.phase})`);
  const path = podCgroupParent(config.linux?.cgroupParent, row.id, ctx.cgroupDriver);
  if (ctx.cgroupDriver === "systemd" || !path.startsWith("/"))
    throw new FailedPreconditionError(
      `pod sandbox ${row.id}: pod-level resources need a cgroupfs pod cgroup (cgroup driver ${ctx.cgroupDriver}, parent ${JSON.stringify(path)})`,
    );
  await applyPodCgroupLimits(path, podTotal(resources, overhead), mounts);
}
