// The network layer's public surface: pod networking for the CRI layer (NetworkManager),
// plus the CNI and netns pieces for tools and tests.
export * from "./service.js";
export {
  CniConfigError,
  CniPluginError,
  CniPluginNotFoundError,
  CniPluginTimeoutError,
  DEFAULT_BRIDGE,
  DEFAULT_NETWORK_NAME,
  DEFAULT_SUBNET,
  type BandwidthLimits,
  type CniResult,
  type DefaultNetworkOptions,
  type DnsCapability,
  type PortMapping,
} from "./cni.js";
export { listNetns, type NetnsInfo } from "./netns.js";
export { removeAllocation, type IpAllocation } from "./host-local.js";
export { killStalePlugins } from "./stale-plugins.js";
