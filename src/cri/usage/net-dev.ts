// A pod's network counters, read in its network namespace: /proc/<pid>/net/dev shows the
// interfaces of the namespace of <pid> (the pod's sandbox process), so no setns is needed.
// Loopback is left out, as containerd and cAdvisor leave it out: traffic a pod sends itself
// is not network use.
import { readFile } from "node:fs/promises";

/** The /proc/net/dev counters of one interface (the kernel's rtnl_link_stats names). */
export interface InterfaceCounters {
  name: string;
  rxBytes: bigint;
  rxPackets: bigint;
  rxErrors: bigint;
  rxDropped: bigint;
  txBytes: bigint;
  txPackets: bigint;
  txErrors: bigint;
  txDropped: bigint;
}

/**
 * Parses /proc/net/dev: two header lines, then "name: 16 numbers", eight receive columns
 * (bytes packets errs drop fifo frame compressed multicast) then eight transmit ones
 * (bytes packets errs drop fifo colls carrier compressed).
 */
export function parseNetDev(text: string): InterfaceCounters[] {
  const out: InterfaceCounters[] = [];
  for (const line of text.split("\n").slice(2)) {
    const at = line.indexOf(":");
    if (at < 0) continue;
    const name = line.slice(0, at).trim();
    const cols = line
      .slice(at + 1)
      .trim()
      .split(/\s+/);
    if (name === "" || name === "lo" || cols.length < 16 || !cols.every((c) => /^\d+$/.test(c))) continue;
    const v = cols.map((c) => BigInt(c));
    out.push({
      name,
      rxBytes: v[0]!,
      rxPackets: v[1]!,
      rxErrors: v[2]!,
      rxDropped: v[3]!,
      txBytes: v[8]!,
      txPackets: v[9]!,
      txErrors: v[10]!,
      txDropped: v[11]!,
    });
  }
  return out;
}

/** The interfaces of `pid`'s network namespace; [] when the process is gone. */
export async function readNetDev(pid: number): Promise<InterfaceCounters[]> {
  const text = await readFile(`/proc/${pid}/net/dev`, "utf8").catch(() => "");
  return parseNetDev(text);
}

/** The interface kubelet shows as the pod's: eth0 (the CNI default), else the first. */
export function defaultInterface<T extends { name: string }>(ifaces: T[]): T | undefined {
  return ifaces.find((i) => i.name === "eth0") ?? ifaces[0];
}
