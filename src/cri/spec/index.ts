// The CRI-to-OCI translation: the OCI runtime spec of a pod sandbox or a container from its
// CRI config (containerd's CRI semantics). src/oci holds the OCI spec types and the helpers
// that know nothing of the CRI.
export { buildSandboxSpec, podNamespaceModes, type PodFiles, type SandboxSpecInput } from "./sandbox-spec.js";
export {
  buildContainerSpec,
  mergeEnv,
  mergeProcessArgs,
  type ContainerSpecInput,
  type ImageProcessConfig,
  type PodPaths,
} from "./container-spec.js";
export { applyResources } from "./resources.js";
