// The parts of the CRI runtime.v1 messages that spec generation reads, declared
// structurally so src/oci does not import the CRI wire code (the lint layer rules keep
// core services away from anything under cri/). The generated types of
// src/gen/cri/runtime/v1/api.ts (ContainerConfig, PodSandboxConfig, ...) are assignable
// to these, so callers pass them as they are; tests check that at compile time.
// Enum numbers are those of kubernetes/cri-api pkg/apis/runtime/v1/api.proto.

export const NamespaceMode = { POD: 0, CONTAINER: 1, NODE: 2, TARGET: 3 } as const;
export const MountPropagation = {
  PROPAGATION_PRIVATE: 0,
  PROPAGATION_HOST_TO_CONTAINER: 1,
  PROPAGATION_BIDIRECTIONAL: 2,
} as const;
export const ProfileType = { RuntimeDefault: 0, Unconfined: 1, Localhost: 2 } as const;
export const SupplementalGroupsPolicy = { Merge: 0, Strict: 1 } as const;

export interface CriInt64Value {
  value: bigint;
}

export interface CriSecurityProfile {
  profileType: number;
  localhostRef: string;
}

export interface CriIDMapping {
  hostId: number;
  containerId: number;
  length: number;
}

export interface CriNamespaceOption {
  network: number;
  pid: number;
  ipc: number;
  targetId: string;
  usernsOptions?: { mode: number } | undefined;
}

export interface CriMount {
  containerPath: string;
  hostPath: string;
  readonly: boolean;
  propagation: number;
  selinuxRelabel?: boolean;
  uidMappings?: CriIDMapping[];
  gidMappings?: CriIDMapping[];
  recursiveReadOnly?: boolean;
  image?: { image: string } | undefined;
}

export interface CriDevice {
  containerPath: string;
  hostPath: string;
  permissions: string;
}

export interface CriHugepageLimit {
  pageSize: string;
  limit: bigint;
}

export interface CriLinuxContainerResources {
  cpuPeriod: bigint;
  cpuQuota: bigint;
  cpuShares: bigint;
  memoryLimitInBytes: bigint;
  oomScoreAdj: bigint;
  cpusetCpus: string;
  cpusetMems: string;
  hugepageLimits: CriHugepageLimit[];
  unified: { [key: string]: string };
  memorySwapLimitInBytes: bigint;
}

export interface CriCapability {
  addCapabilities: string[];
  dropCapabilities: string[];
}

export interface CriLinuxContainerSecurityContext {
  capabilities?: CriCapability | undefined;
  privileged: boolean;
  namespaceOptions?: CriNamespaceOption | undefined;
  runAsUser?: CriInt64Value | undefined;
  runAsGroup?: CriInt64Value | undefined;
  runAsUsername: string;
  readonlyRootfs: boolean;
  supplementalGroups: bigint[];
  supplementalGroupsPolicy?: number;
  noNewPrivs: boolean;
  maskedPaths: string[];
  readonlyPaths: string[];
  seccomp?: CriSecurityProfile | undefined;
  apparmor?: CriSecurityProfile | undefined;
  apparmorProfile: string;
  seccompProfilePath: string;
}

export interface CriContainerConfig {
  metadata?: { name: string; attempt: number } | undefined;
  image?: { image: string } | undefined;
  command: string[];
  args: string[];
  workingDir: string;
  envs: { key: string; value: Buffer | string }[];
  mounts: CriMount[];
  devices: CriDevice[];
  tty: boolean;
  linux?:
    | {
        resources?: CriLinuxContainerResources | undefined;
        securityContext?: CriLinuxContainerSecurityContext | undefined;
      }
    | undefined;
}

export interface CriLinuxSandboxSecurityContext {
  namespaceOptions?: CriNamespaceOption | undefined;
  runAsUser?: CriInt64Value | undefined;
  runAsGroup?: CriInt64Value | undefined;
  readonlyRootfs: boolean;
  supplementalGroups: bigint[];
  privileged: boolean;
  seccomp?: CriSecurityProfile | undefined;
  seccompProfilePath: string;
}

export interface CriPodSandboxConfig {
  metadata?: { name: string; uid: string; namespace: string; attempt: number } | undefined;
  hostname: string;
  logDirectory: string;
  linux?:
    | {
        cgroupParent: string;
        securityContext?: CriLinuxSandboxSecurityContext | undefined;
        sysctls: { [key: string]: string };
        resources?: CriLinuxContainerResources | undefined;
      }
    | undefined;
}
