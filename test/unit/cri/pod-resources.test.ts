// Pod resize arithmetic (src/cri/pod-resources.ts): resources + overhead, and the cgroup v1 /
// unified files each value goes to.
import assert from "node:assert/strict";
import { test } from "node:test";
import { cgroupWrites, podTotal, sharesToWeight } from "../../../src/cri/pod-resources.js";
import { InvalidArgumentError } from "../../../src/util/errors.js";
import type { LinuxContainerResources } from "../../../src/gen/cri/runtime/v1/api.js";

const res = (r: Partial<LinuxContainerResources>) => r as LinuxContainerResources;

test("pod total = resources + overhead; unset (0) stays unset", () => {
  const t = podTotal(
    res({ cpuPeriod: 100000n, cpuQuota: 50000n, cpuShares: 512n, memoryLimitInBytes: 1000n }),
    res({ cpuPeriod: 50000n, cpuQuota: 5000n, cpuShares: 10n, memoryLimitInBytes: 24n }),
  );
  assert.equal(t.cpuQuota, 60000n, "overhead quota rescaled to the pod's period");
  assert.equal(t.cpuShares, 522n);
  assert.equal(t.memoryLimitInBytes, 1024n);
  const unlimited = podTotal(res({ cpuShares: 2n, memoryLimitInBytes: 0n }), res({ memoryLimitInBytes: 24n }));
  assert.equal(unlimited.memoryLimitInBytes, 0n, "no pod limit stays no limit");
  assert.throws(() => podTotal(undefined, undefined), InvalidArgumentError);
});

test("cgroup v1 and unified writes", () => {
  const r = res({
    cpuPeriod: 100000n,
    cpuQuota: 60000n,
    cpuShares: 1024n,
    memoryLimitInBytes: 4096n,
    cpusetCpus: "0",
    hugepageLimits: [{ pageSize: "2MB", limit: 0n }],
  });
  assert.deepEqual(
    cgroupWrites(r, false).map((w) => `${w.controller}/${w.file}=${w.value}`),
    [
      "cpu/cpu.cfs_period_us=100000",
      "cpu/cpu.cfs_quota_us=60000",
      "cpu/cpu.shares=1024",
      "memory/memory.limit_in_bytes=4096",
      "cpuset/cpuset.cpus=0",
      "hugetlb/hugetlb.2MB.limit_in_bytes=0",
    ],
  );
  assert.deepEqual(
    cgroupWrites({ ...r, unified: { "memory.high": "2048" } }, true).map((w) => `${w.file}=${w.value}`),
    [
      "cpu.max=60000 100000",
      "cpu.weight=39",
      "memory.max=4096",
      "cpuset.cpus=0",
      "hugetlb.2MB.max=0",
      "memory.high=2048",
    ],
  );
  assert.throws(() => cgroupWrites(res({ unified: { "memory.high": "1" } }), false), InvalidArgumentError);
  assert.equal(sharesToWeight(2), 1);
  assert.equal(sharesToWeight(262144), 10000);
});
