// The host-local IPAM plugin's allocations, read from its data directory: one file per
// reserved address, <dataDir>/<network name>/<ip>, holding the container id (CNI_CONTAINERID)
// and, since plugins 0.8, "\r\n" and the interface name. Next to them are its "lock" file and
// "last_reserved_ip.<range>" hints. The plugin releases an address on DEL; these helpers are
// for what DEL can no longer reach (berthd's start-up sweep of leftovers no pod record owns).

import { readdir, readFile, unlink } from "node:fs/promises";
import { isIP } from "node:net";
import { join } from "node:path";
import type { CniNetworkConfigList } from "./cni/types.js";

/** host-local's own default (plugins/ipam/host-local/backend/disk). */
export const HOST_LOCAL_DEFAULT_DATA_DIR = "/var/lib/cni/networks";

export interface IpAllocation {
  path: string;
  network: string;
  ip: string;
  /** the CNI_CONTAINERID it was reserved for (berth passes the pod id) */
  containerId: string;
}

/** The allocation directories of the lists' host-local IPAM plugins (<dataDir>/<network>), deduplicated. */
export function hostLocalDirs(lists: CniNetworkConfigList[]): { network: string; dir: string }[] {
  const out = new Map<string, { network: string; dir: string }>();
  for (const list of lists) {
    for (const p of list.plugins) {
      if (p.ipam?.type !== "host-local") continue;
      const dataDir =
        typeof p.ipam.dataDir === "string" && p.ipam.dataDir ? p.ipam.dataDir : HOST_LOCAL_DEFAULT_DATA_DIR;
      // host-local names the directory after the network (the list's name).
      const dir = join(dataDir, list.name);
      out.set(dir, { network: list.name, dir });
    }
  }
  return [...out.values()];
}

/** The container id an allocation file holds (its first line). */
export function allocationOwner(content: string): string {
  return (content.split(/\r?\n/)[0] ?? "").trim();
}

/** Every address reserved in `dir`; empty when the directory does not exist. */
export async function listAllocations(network: string, dir: string): Promise<IpAllocation[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
  const out: IpAllocation[] = [];
  for (const ip of names.sort()) {
    if (isIP(ip) === 0) continue; // lock, last_reserved_ip.N
    const path = join(dir, ip);
    let content: string;
    try {
      content = await readFile(path, "utf8");
    } catch {
      continue; // released meanwhile
    }
    out.push({ path, network, ip, containerId: allocationOwner(content) });
  }
  return out;
}

/** Every address reserved by the host-local plugins of `lists`. */
export async function listAllocationsOf(lists: CniNetworkConfigList[]): Promise<IpAllocation[]> {
  const out: IpAllocation[] = [];
  for (const { network, dir } of hostLocalDirs(lists)) out.push(...(await listAllocations(network, dir)));
  return out;
}

/** Releases one address by removing its file; false when it was already gone. */
export async function removeAllocation(path: string): Promise<boolean> {
  try {
    await unlink(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw err;
  }
}
