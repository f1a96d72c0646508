// OCI runtime spec generation from CRI configuration: the public surface of src/oci.

export * from "./spec.js";
export { buildSandboxSpec, podNamespaceModes, type PodFiles, type SandboxSpecInput } from "./sandbox-spec.js";
export {
  buildContainerSpec,
  mergeEnv,
  mergeProcessArgs,
  type ContainerSpecInput,
  type ImageProcessConfig,
  type PodPaths,
} from "./container-spec.js";
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
