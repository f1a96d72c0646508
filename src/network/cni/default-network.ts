// berth's default network: a bridge with host-local IPAM and portmap, written into conf_dir
// when it holds no configuration, with the newest cniVersion every plugin it uses supports.

import { mkdir } from "node:fs/promises";
import { join } from "node:path";

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
export const DEFAULT_NETWORK_PLUGINS = ["bridge", "host-local", "portmap", "loopback"];

/** Builds the default configuration list (a bridge with NAT to the outside, plus hostPort mapping). */
export function defaultNetworkConfig(cniVersion: string, opts: DefaultNetworkOptions = {}): Record<string, unknown> {
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
        ipMasq: true,
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
  const conf = defaultNetworkConfig(version, opts);
  const text = JSON.stringify(conf, null, 2) + "\n";
  const file = join(confDir, opts.fileName ?? DEFAULT_CONFIG_FILE);
  await mkdir(confDir, { recursive: true, mode: 0o755 });
  await writeFileAtomic(file, text);
  return parseNetworkConfig(text, file);
}
