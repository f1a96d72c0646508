// The annotation keys containerd's CRI plugin writes into every config.json. Shims
// read them: containerd-shim-runc-v2 groups all containers of a pod into one shim by
// io.kubernetes.cri.sandbox-id, and tools tell sandboxes from containers by the type.

export const ANNOTATION_CONTAINER_TYPE = "io.kubernetes.cri.container-type";
export const CONTAINER_TYPE_SANDBOX = "sandbox";
export const CONTAINER_TYPE_CONTAINER = "container";
export const ANNOTATION_SANDBOX_ID = "io.kubernetes.cri.sandbox-id";
export const ANNOTATION_SANDBOX_NAME = "io.kubernetes.cri.sandbox-name";
export const ANNOTATION_SANDBOX_NAMESPACE = "io.kubernetes.cri.sandbox-namespace";
export const ANNOTATION_SANDBOX_UID = "io.kubernetes.cri.sandbox-uid";
export const ANNOTATION_SANDBOX_LOG_DIR = "io.kubernetes.cri.sandbox-log-directory";
export const ANNOTATION_SANDBOX_CPU_PERIOD = "io.kubernetes.cri.sandbox-cpu-period";
export const ANNOTATION_SANDBOX_CPU_QUOTA = "io.kubernetes.cri.sandbox-cpu-quota";
export const ANNOTATION_SANDBOX_CPU_SHARES = "io.kubernetes.cri.sandbox-cpu-shares";
export const ANNOTATION_SANDBOX_MEMORY = "io.kubernetes.cri.sandbox-memory";
export const ANNOTATION_CONTAINER_NAME = "io.kubernetes.cri.container-name";
export const ANNOTATION_IMAGE_NAME = "io.kubernetes.cri.image-name";
export const ANNOTATION_RUNTIME_HANDLER = "io.containerd.cri.runtime-handler";
