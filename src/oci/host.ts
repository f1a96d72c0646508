// Facts about the host that shape a spec: what the daemon itself may do (its
// capabilities and OOM score), and which kernel features exist. Probed once; tests
// pass their own.

import { existsSync, readFileSync, readdirSync, statfsSync } from "node:fs";
import { hostname, release } from "node:os";
import { currentCapabilities } from "./capabilities.js";

export interface HostFacts {
  /** The daemon's own oom_score_adj: without CAP_SYS_RESOURCE no child may go below it. */
  oomScoreAdj: number;
  /** The daemon's effective capabilities: "ALL" and privileged mean these. */
  capabilities: string[];
  /** /sys/module/apparmor/parameters/enabled is "Y". */
  apparmorEnabled: boolean;
  /** /sys/fs/cgroup is a cgroup2 mount. */
  cgroupV2: boolean;
  /** memory.memsw.* (v1) or memory.swap.max (v2) exists: swap can be limited. */
  swapControllerAvailable: boolean;
  /** The hugetlb controller exists. */
  hugetlbAvailable: boolean;
  /** uname -r. */
  kernelRelease: string;
  /** The node's hostname (HOSTNAME of host-network pods that set none). */
  hostname: string;
}

const CGROUP2_SUPER_MAGIC = 0x63677270;

function readTrim(path: string): string | null {
  try {
    return readFileSync(path, "utf8").trim();
  } catch {
    return null;
  }
}

function isCgroupV2(): boolean {
  try {
    return statfsSync("/sys/fs/cgroup").type === CGROUP2_SUPER_MAGIC;
  } catch {
    return false;
  }
}

/** The daemon's unified (v2) cgroup directory, from /proc/self/cgroup's "0::" line. */
function ownCgroupV2Dir(): string {
  const line = (readTrim("/proc/self/cgroup") ?? "").split("\n").find((l) => l.startsWith("0::"));
  return "/sys/fs/cgroup" + (line ? line.slice(3) : "");
}

let cached: HostFacts | undefined;

/** Probes the host once per process. */
export function probeHost(): HostFacts {
  if (cached) return cached;
  const v2 = isCgroupV2();
  let hugetlb: boolean;
  if (v2) {
    hugetlb = (readTrim("/sys/fs/cgroup/cgroup.controllers") ?? "").split(/\s+/).includes("hugetlb");
  } else {
    try {
      readdirSync("/sys/fs/cgroup/hugetlb");
      hugetlb = true;
    } catch {
      hugetlb = false;
    }
  }
  cached = {
    oomScoreAdj: Number(readTrim("/proc/self/oom_score_adj") ?? "0") || 0,
    capabilities: currentCapabilities(),
    apparmorEnabled: readTrim("/sys/module/apparmor/parameters/enabled") === "Y",
    cgroupV2: v2,
    swapControllerAvailable: v2
      ? existsSync(ownCgroupV2Dir() + "/memory.swap.max")
      : existsSync("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"),
    hugetlbAvailable: hugetlb,
    kernelRelease: release(),
    hostname: hostname(),
  };
  return cached;
}
