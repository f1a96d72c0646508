// Task metrics from cgroup v1, as containerd's runc shim reports them: a
// io.containerd.cgroups.v1.Metrics message, so `ctr task metrics` can print it.
import { access, readFile } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { join } from "node:path";

import { BlkIOStat, Metrics, type BlkIOEntry, type MemoryEntry } from "../gen/cgroups/stats/v1/metrics.js";
import type { Any } from "../gen/google/protobuf/any.js";

export const METRICS_TYPE_URL = "io.containerd.cgroups.v1.Metrics";
const ROOT = "/sys/fs/cgroup";

/** controller -> cgroup path, from /proc/PID/cgroup (v1 lines "N:ctrl1,ctrl2:/path"). */
export function cgroupPathsOf(pid: number): Map<string, string> {
  const out = new Map<string, string>();
  // Read synchronously: a /proc file is generated in the kernel at once, and a read through
  // the thread pool costs more round trips (on Create's path) than the read itself.
  let text = "";
  try {
    text = readFileSync(`/proc/${pid}/cgroup`, "utf8");
  } catch {
    // gone: no cgroup known
  }
  for (const line of text.split("\n")) {
    const m = /^\d+:([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    for (const c of m[1]!.split(",")) if (c) out.set(c, m[2]!);
  }
  return out;
}

const exists = (path: string) =>
  access(path).then(
    () => true,
    () => false,
  );

async function num(path: string): Promise<bigint> {
  const t = await readFile(path, "utf8").catch(() => "");
  const s = t.trim();
  if (!s || s === "max") return 0n;
  try {
    return BigInt(s.split(/\s+/)[0]!);
  } catch {
    return 0n;
  }
}

async function kv(path: string): Promise<Map<string, bigint>> {
  const out = new Map<string, bigint>();
  const t = await readFile(path, "utf8").catch(() => "");
  for (const line of t.split("\n")) {
    const [k, v] = line.trim().split(/\s+/);
    if (k && v !== undefined && /^\d+$/.test(v)) out.set(k, BigInt(v));
  }
  return out;
}

async function memEntry(dir: string, prefix: string): Promise<MemoryEntry> {
  return {
    usage: await num(join(dir, `${prefix}.usage_in_bytes`)),
    max: await num(join(dir, `${prefix}.max_usage_in_bytes`)),
    limit: await num(join(dir, `${prefix}.limit_in_bytes`)),
    failcnt: await num(join(dir, `${prefix}.failcnt`)),
  };
}

/** The device node of MAJ:MIN ("/dev/vda"), from sysfs; "" when unknown. */
async function deviceName(major: string, minor: string): Promise<string> {
  const uevent = await readFile(`/sys/dev/block/${major}:${minor}/uevent`, "utf8").catch(() => "");
  const name = /^DEVNAME=(.+)$/m.exec(uevent)?.[1];
  return name ? `/dev/${name}` : "";
}

async function blkio(dir: string, file: string): Promise<BlkIOEntry[]> {
  const t = await readFile(join(dir, file), "utf8").catch(() => "");
  const out: BlkIOEntry[] = [];
  const names = new Map<string, string>();
  for (const line of t.split("\n")) {
    const parts = line.trim().split(/\s+/);
    // "MAJ:MIN OP VALUE" or "MAJ:MIN VALUE"; "Total N" is skipped
    const dev = /^(\d+):(\d+)$/.exec(parts[0] ?? "");
    if (!dev) continue;
    const [op, value] = parts.length === 3 ? [parts[1]!, parts[2]!] : ["", parts[1] ?? "0"];
    if (!names.has(parts[0]!)) names.set(parts[0]!, await deviceName(dev[1]!, dev[2]!));
    out.push({
      major: BigInt(dev[1]!),
      minor: BigInt(dev[2]!),
      op,
      device: names.get(parts[0]!)!,
      value: BigInt(value),
    });
  }
  return out;
}

/** Reads the v1 controllers of a task; `paths` maps controller -> path relative to its root. */
export async function collectMetrics(paths: Map<string, string>): Promise<Metrics> {
  const at = (c: string) => {
    const p = paths.get(c);
    return p === undefined ? undefined : join(ROOT, c, p);
  };
  const m = Metrics.fromPartial({});
  const pidsDir = at("pids");
  if (pidsDir)
    m.pids = { current: await num(join(pidsDir, "pids.current")), limit: await num(join(pidsDir, "pids.max")) };
  const acct = at("cpuacct");
  const cpu = at("cpu");
  if (acct || cpu) {
    const st = acct ? await kv(join(acct, "cpuacct.stat")) : new Map<string, bigint>();
    const hz = 100n; // USER_HZ
    const perCpuText = acct ? await readFile(join(acct, "cpuacct.usage_percpu"), "utf8").catch(() => "") : "";
    const thr = cpu ? await kv(join(cpu, "cpu.stat")) : new Map<string, bigint>();
    m.cpu = {
      usage: {
        total: acct ? await num(join(acct, "cpuacct.usage")) : 0n,
        kernel: ((st.get("system") ?? 0n) * 1_000_000_000n) / hz,
        user: ((st.get("user") ?? 0n) * 1_000_000_000n) / hz,
        perCpu: perCpuText.trim()
          ? perCpuText
              .trim()
              .split(/\s+/)
              .map((x) => BigInt(x))
          : [],
      },
      throttling: {
        periods: thr.get("nr_periods") ?? 0n,
        throttledPeriods: thr.get("nr_throttled") ?? 0n,
        throttledTime: thr.get("throttled_time") ?? 0n,
      },
    };
  }
  const mem = at("memory");
  if (mem) {
    const s = await kv(join(mem, "memory.stat"));
    const g = (k: string) => s.get(k) ?? 0n;
    const oom = await kv(join(mem, "memory.oom_control"));
    m.memory = {
      cache: g("cache"),
      rss: g("rss"),
      rssHuge: g("rss_huge"),
      mappedFile: g("mapped_file"),
      dirty: g("dirty"),
      writeback: g("writeback"),
      pgPgIn: g("pgpgin"),
      pgPgOut: g("pgpgout"),
      pgFault: g("pgfault"),
      pgMajFault: g("pgmajfault"),
      inactiveAnon: g("inactive_anon"),
      activeAnon: g("active_anon"),
      inactiveFile: g("inactive_file"),
      activeFile: g("active_file"),
      unevictable: g("unevictable"),
      hierarchicalMemoryLimit: g("hierarchical_memory_limit"),
      hierarchicalSwapLimit: g("hierarchical_memsw_limit"),
      totalCache: g("total_cache"),
      totalRss: g("total_rss"),
      totalRssHuge: g("total_rss_huge"),
      totalMappedFile: g("total_mapped_file"),
      totalDirty: g("total_dirty"),
      totalWriteback: g("total_writeback"),
      totalPgPgIn: g("total_pgpgin"),
      totalPgPgOut: g("total_pgpgout"),
      totalPgFault: g("total_pgfault"),
      totalPgMajFault: g("total_pgmajfault"),
      totalInactiveAnon: g("total_inactive_anon"),
      totalActiveAnon: g("total_active_anon"),
      totalInactiveFile: g("total_inactive_file"),
      totalActiveFile: g("total_active_file"),
      totalUnevictable: g("total_unevictable"),
      usage: await memEntry(mem, "memory"),
      swap: await memEntry(mem, "memory.memsw"),
      kernel: await memEntry(mem, "memory.kmem"),
      kernelTcp: await memEntry(mem, "memory.kmem.tcp"),
    };
    m.memoryOomControl = {
      oomKillDisable: oom.get("oom_kill_disable") ?? 0n,
      underOom: oom.get("under_oom") ?? 0n,
      oomKill: oom.get("oom_kill") ?? 0n,
    };
  }
  const blk = at("blkio");
  // Kernels without CFQ (5.0+) have no blkio.io_serviced_recursive: the throttle layer's
  // counters are the only ones, as containerd's cgroups library falls back to them. (They
  // count only once blk-throttle is active on the device's queue: some cgroup set a rule.)
  if (blk && !(await exists(join(blk, "blkio.io_serviced_recursive")))) {
    m.blkio = BlkIOStat.fromPartial({
      ioServiceBytesRecursive: await blkio(blk, "blkio.throttle.io_service_bytes_recursive"),
      ioServicedRecursive: await blkio(blk, "blkio.throttle.io_serviced_recursive"),
    });
  } else if (blk) {
    m.blkio = {
      ioServiceBytesRecursive: await blkio(blk, "blkio.io_service_bytes_recursive"),
      ioServicedRecursive: await blkio(blk, "blkio.io_serviced_recursive"),
      ioQueuedRecursive: await blkio(blk, "blkio.io_queued_recursive"),
      ioServiceTimeRecursive: await blkio(blk, "blkio.io_service_time_recursive"),
      ioWaitTimeRecursive: await blkio(blk, "blkio.io_wait_time_recursive"),
      ioMergedRecursive: await blkio(blk, "blkio.io_merged_recursive"),
      ioTimeRecursive: await blkio(blk, "blkio.time_recursive"),
      sectorsRecursive: await blkio(blk, "blkio.sectors_recursive"),
    };
  }
  return m;
}

export function metricsAny(m: Metrics): Any {
  return { typeUrl: METRICS_TYPE_URL, value: Buffer.from(Metrics.encode(m).finish()) };
}
