// Waits for the machine to go quiet before a runtime's timed phase in the side-by-side run.
// Tearing down a runtime's 100 pods leaves the kernel busy for a while after the last CRI call
// returned (network namespaces are destroyed by a kernel worker, asynchronously), and the next
// phase would pay for it: reads were once measured on a busier machine for one runtime than for
// another. So every timed phase starts alike, once the CPUs have been mostly idle for a second,
// or after a bound.
import { readFileSync } from "node:fs";

interface CpuTimes {
  idle: number;
  total: number;
}

function cpuTimes(): CpuTimes {
  // "cpu  user nice system idle iowait irq softirq steal guest guest_nice" (USER_HZ ticks)
  const fields = readFileSync("/proc/stat", "utf8").split("\n", 1)[0]!.trim().split(/\s+/).slice(1).map(Number);
  const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = fields;
  return { idle: idle + iowait, total: user + nice + system + idle + iowait + irq + softirq + steal };
}

/** The share of CPU time (0-1, all CPUs) that was busy over `ms`. */
export async function busyOver(ms: number): Promise<number> {
  const a = cpuTimes();
  await new Promise((r) => setTimeout(r, ms));
  const b = cpuTimes();
  const total = b.total - a.total;
  return total <= 0 ? 0 : 1 - (b.idle - a.idle) / total;
}

/**
 * Resolves once a one-second window had at most `maxBusy` of the CPUs busy, or after
 * `boundMs`; says how long it waited and how busy the last window was.
 */
export async function waitForQuiet(maxBusy = 0.1, boundMs = 120_000): Promise<{ waitedMs: number; busy: number }> {
  const t0 = Date.now();
  for (;;) {
    const busy = await busyOver(1000);
    if (busy <= maxBusy || Date.now() - t0 >= boundMs) return { waitedMs: Date.now() - t0, busy };
  }
}
