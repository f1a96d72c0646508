// OCI runtime spec types and the helpers that know nothing of the CRI: the public surface of
// src/oci. The CRI-to-OCI translation is in src/cri/spec/.

export * from "./spec.js";
export { rootfsUserLookup, resolveProcessUser, type UserLookup, type PasswdEntry, type GroupEntry } from "./user.js";
export { probeHost, type HostFacts } from "./host.js";
export { defaultSeccompProfile } from "./seccomp-default.js";
export {
  cgroupsPath,
  DEFAULT_CGROUP_PARENT,
  podCgroupOwned,
  podCgroupParent,
  type CgroupDriver,
} from "./cgroups-path.js";
export { DEFAULT_SHM_SIZE_BYTES } from "./defaults.js";
export * from "./annotations.js";
