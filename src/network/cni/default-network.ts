// berth's default network: a bridge with host-local IPAM and portmap, written into conf_dir
// when it holds no configuration, with the newest cniVersion every plugin it uses supports.
// Its outbound NAT is not the bridge plugin's ipMasq (a chain per pod, 15 iptables runs per
// pod lifecycle) but one rule berthd installs for the subnet (../masquerade.ts).

import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { isDeepStrictEqual } from "node:util";

import { writeFileAtomic } from "../../util/atomic-write.js";
import { parseNetworkConfig } from "./config.js";
import type { CniExec } from "./invoke.js";
import type { CniNetworkConfigList } from "./types.js";

export interface DefaultNetworkOptions {
  /** network name; default "berth-default" */
  name?: string;
  /** Linux bridge; default "berth0" */
  bridge?: string;
  /** IPv4 pod subnet; default 10.85.0.0/16 (clear of podman/CRI-O 10.88, k8s services 10.96/12, flannel 10.244, k3s 10.42-43, docker 172.17) */
  subnet?: string;
  /** host-local's allocation directory; default the plugin's own /var/lib/cni/networks */
  dataDir?: string;
  /** config file name in conf_dir; default "10-berth-default.conflist" */
  fileName?: string;
}

export const DEFAULT_NETWORK_NAME = "berth-default";
export const DEFAULT_BRIDGE = "berth0";
export const DEFAULT_SUBNET = "10.85.0.0/16";
export const DEFAULT_CONFIG_FILE = "10-berth-default.conflist";

/** The plugins the default network runs; their binaries must exist for it to work. */
export const DEFAULT_NETWORK_PLUGINS = ["bridge", "host-local", "portmap"];

/**
 * Builds the default configuration list (a bridge, plus hostPort mapping). NAT to the outside
 * is berthd's one masquerade rule for the subnet; `legacyIpMasq` gives the list as berth
 * wrote it before that (the bridge plugin's per-pod ipMasq), to recognise it.
 */
export function defaultNetworkConfig(
  cniVersion: string,
  opts: DefaultNetworkOptions = {},
  legacyIpMasq = false,
): Record<string, unknown> {
  const ipam: Record<string, unknown> = {
    type: "host-local",
    ranges: [[{ subnet: opts.subnet ?? DEFAULT_SUBNET }]],
    routes: [{ dst: "0.0.0.0/0" }],
  };
  if (opts.dataDir) ipam.dataDir = opts.dataDir;
  return {
    cniVersion,
    name: opts.name ?? DEFAULT_NETWORK_NAME,
    plugins: [
      {
        type: "bridge",
        bridge: opts.bridge ?? DEFAULT_BRIDGE,
        isGateway: true,
        ipMasq: legacyIpMasq,
        hairpinMode: true,
        ipam,
      },
      { type: "portmap", capabilities: { portMappings: true } },
    ],
  };
}

/**
 * Writes the default config list into conf_dir, with the newest cniVersion that every
 * plugin it uses supports, and returns the loaded list.
 */
export async function writeDefaultNetworkConfig(
  confDir: string,
  exec: CniExec,
  opts: DefaultNetworkOptions = {},
): Promise<CniNetworkConfigList> {
  const version = await exec.commonVersion(DEFAULT_NETWORK_PLUGINS, ["1.0.0", "0.4.0"]);
  return rewriteDefaultNetworkConfig(confDir, version, opts);
}

/** Writes the default config list with the given cniVersion (atomically replacing the file). */
export async function rewriteDefaultNetworkConfig(
  confDir: string,
  cniVersion: string,
  opts: DefaultNetworkOptions = {},
): Promise<CniNetworkConfigList> {
  const text = JSON.stringify(defaultNetworkConfig(cniVersion, opts), null, 2) + "\n";
  const file = join(confDir, opts.fileName ?? DEFAULT_CONFIG_FILE);
  await mkdir(confDir, { recursive: true, mode: 0o755 });
  await writeFileAtomic(file, text);
  return parseNetworkConfig(text, file);
}

/**
 * Whether `list` is berth's default network as berth writes it: "current", "legacy" (written
 * by an older berth, with the bridge plugin's ipMasq) or undefined for anything else, such as
 * an administrator's own list or one they edited, which berth leaves alone.
 */
export function recognizeDefaultNetwork(
  list: CniNetworkConfigList,
  confDir: string,
  opts: DefaultNetworkOptions = {},
): "current" | "legacy" | undefined {
  if (list.source !== join(confDir, opts.fileName ?? DEFAULT_CONFIG_FILE)) return undefined;
  if (list.name !== (opts.name ?? DEFAULT_NETWORK_NAME) || list.disableCheck) return undefined;
  for (const [kind, legacy] of [
    ["current", false],
    ["legacy", true],
  ] as const) {
    const want = defaultNetworkConfig(list.cniVersion, opts, legacy);
    if (isDeepStrictEqual(list.plugins, want.plugins)) return kind;
  }
  return undefined;
}
