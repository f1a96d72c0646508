// CRI LinuxContainerResources -> OCI linux.resources and process.oomScoreAdj
// (containerd's opts.WithResources / WithOOMScoreAdj).

import type { LinuxContainerResources } from "../../gen/cri/runtime/v1/api.js";
import { InvalidArgumentError } from "../../util/errors.js";
import type { HostFacts } from "../../oci/host.js";
import type { Resources } from "../../oci/spec.js";

/** An int64 from the CRI as a JS number; values beyond 2^53 are refused rather than rounded. */
export function int64(v: bigint, field: string): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) {
    throw new InvalidArgumentError(`${field} ${v} is out of range`);
  }
  return Number(v);
}

/**
 * The OOM score adjustment a process may really get: never below the daemon's own
 * (a process without CAP_SYS_RESOURCE cannot lower it, and the kernel would refuse the
 * container start), never outside the kernel's -1000..1000.
 */
export function clampOomScoreAdj(requested: number, daemonOomScoreAdj: number): number {
  if (!Number.isInteger(requested) || requested < -1000 || requested > 1000) {
    throw new InvalidArgumentError(`oom_score_adj ${requested} is outside -1000..1000`);
  }
  return Math.min(1000, Math.max(requested, daemonOomScoreAdj));
}

/** Merges a CRI resource request into `out` (which may already carry device rules). */
export function applyResources(
  out: Resources,
  r: LinuxContainerResources | undefined,
  host: Pick<HostFacts, "swapControllerAvailable" | "hugetlbAvailable">,
): void {
  if (!r) return;
  const period = int64(r.cpuPeriod, "cpu_period");
  const quota = int64(r.cpuQuota, "cpu_quota");
  const shares = int64(r.cpuShares, "cpu_shares");
  const limit = int64(r.memoryLimitInBytes, "memory_limit_in_bytes");
  const swap = int64(r.memorySwapLimitInBytes, "memory_swap_limit_in_bytes");
  if (period < 0) throw new InvalidArgumentError(`cpu_period ${period} must not be negative`);
  if (shares < 0) throw new InvalidArgumentError(`cpu_shares ${shares} must not be negative`);

  const cpu = { ...(out.cpu ?? {}) };
  if (period !== 0) cpu.period = period;
  if (quota !== 0) cpu.quota = quota;
  if (shares !== 0) cpu.shares = shares;
  if (r.cpusetCpus) cpu.cpus = r.cpusetCpus;
  if (r.cpusetMems) cpu.mems = r.cpusetMems;
  if (Object.keys(cpu).length > 0) out.cpu = cpu;

  const memory = { ...(out.memory ?? {}) };
  if (limit !== 0) {
    memory.limit = limit;
    // memory+swap equal to the limit: no swapping unless swap is asked for (containerd).
    if (swap === 0 && host.swapControllerAvailable) memory.swap = limit;
  }
  if (swap !== 0 && host.swapControllerAvailable) memory.swap = swap;
  if (Object.keys(memory).length > 0) out.memory = memory;

  // Without the hugetlb controller containerd's default config
  // (tolerate_missing_hugetlb_controller = true) skips the limits.
  if (r.hugepageLimits.length > 0 && host.hugetlbAvailable) {
    out.hugepageLimits = r.hugepageLimits.map((h) => ({
      pageSize: h.pageSize,
      limit: int64(h.limit, "hugepage limit"),
    }));
  }
  if (Object.keys(r.unified).length > 0) out.unified = { ...(out.unified ?? {}), ...r.unified };
}
