// The CNI data the runtime handles (containernetworking/cni SPEC.md): configuration lists,
// results, and the runtime's per-call arguments (RuntimeConf, capabilities).

/** One plugin's entry in a configuration list; everything but `type` is the plugin's business. */
export interface CniPluginConf {
  type: string;
  capabilities?: Record<string, boolean>;
  ipam?: { type?: string; [key: string]: unknown };
  [key: string]: unknown;
}

/** A network configuration list, as loaded (a single-plugin .conf is wrapped into one). */
export interface CniNetworkConfigList {
  cniVersion: string;
  name: string;
  disableCheck: boolean;
  plugins: CniPluginConf[];
  /** The file it came from, "" when built in code. */
  source: string;
}

export interface CniInterface {
  name: string;
  mac?: string;
  mtu?: number;
  /** set for interfaces inside the sandbox: the netns path */
  sandbox?: string;
}

export interface CniIPConfig {
  /** CIDR notation: "10.85.0.7/16" */
  address: string;
  gateway?: string;
  /** index into `interfaces` */
  interface?: number;
  /** "4" or "6"; present in results before CNI 1.0.0 */
  version?: string;
}

export interface CniRoute {
  dst: string;
  gw?: string;
}

export interface CniDNS {
  nameservers?: string[];
  domain?: string;
  search?: string[];
  options?: string[];
}

/** A plugin's (and so a list's) result. Unknown fields are kept, they are passed on as prevResult. */
export interface CniResult {
  cniVersion: string;
  interfaces?: CniInterface[];
  ips?: CniIPConfig[];
  routes?: CniRoute[];
  dns?: CniDNS;
  [key: string]: unknown;
}

/** The `portMappings` capability (CNI CONVENTIONS.md), consumed by the portmap plugin. */
export interface PortMapping {
  hostPort: number;
  containerPort: number;
  protocol: "tcp" | "udp" | "sctp";
  /** empty or missing: all host addresses */
  hostIP?: string;
}

/** The `bandwidth` capability, in bits per second and bits (consumed by the bandwidth plugin). */
export interface BandwidthLimits {
  ingressRate?: number;
  ingressBurst?: number;
  egressRate?: number;
  egressBurst?: number;
}

/** The `dns` capability. */
export interface DnsCapability {
  servers?: string[];
  searches?: string[];
  options?: string[];
}

/** Per-invocation facts, the same for every plugin of a list (SPEC: "the same environment"). */
export interface RuntimeConf {
  containerId: string;
  /** path of the pinned network namespace */
  netns: string;
  ifName: string;
  /** CNI_ARGS as ordered key/value pairs */
  args: [string, string][];
  /** values for capabilities: a plugin gets runtimeConfig[k] only when it lists capability k */
  capabilityArgs: {
    portMappings?: PortMapping[];
    bandwidth?: BandwidthLimits;
    dns?: DnsCapability;
    [key: string]: unknown;
  };
}

export type CniCommand = "ADD" | "DEL" | "CHECK" | "VERSION";
