// The OCI spec of a pod's sandbox process. berth runs no pause image: the sandbox rootfs
// is a tiny directory holding a static /pause binary, so everything an image config
// would give (args, user, env) is decided here. The sandbox holds the pod's namespaces
// (network from CNI's netns file, IPC, UTS, and PID when shared) for the containers to
// join, and needs no privilege at all: no capabilities, a read-only rootfs, no new
// privileges (and the seccomp filter the pod asks for, none when unset).

import { NamespaceMode, type PodSandboxConfig } from "../../gen/cri/runtime/v1/api.js";
import { InternalError, InvalidArgumentError } from "../../util/errors.js";
import {
  ANNOTATION_CONTAINER_TYPE,
  ANNOTATION_RUNTIME_HANDLER,
  ANNOTATION_SANDBOX_CPU_PERIOD,
  ANNOTATION_SANDBOX_CPU_QUOTA,
  ANNOTATION_SANDBOX_CPU_SHARES,
  ANNOTATION_SANDBOX_ID,
  ANNOTATION_SANDBOX_LOG_DIR,
  ANNOTATION_SANDBOX_MEMORY,
  ANNOTATION_SANDBOX_NAME,
  ANNOTATION_SANDBOX_NAMESPACE,
  ANNOTATION_SANDBOX_UID,
  CONTAINER_TYPE_SANDBOX,
} from "../../oci/annotations.js";
import { cgroupsPath, type CgroupDriver } from "../../oci/cgroups-path.js";
import {
  DEFAULT_MASKED_PATHS,
  DEFAULT_PATH_ENV,
  DEFAULT_READONLY_PATHS,
  SANDBOX_CPU_SHARES,
  SANDBOX_DEFAULT_GID,
  SANDBOX_DEFAULT_UID,
  SANDBOX_OOM_SCORE_ADJ,
} from "../../oci/defaults.js";
import { probeHost, type HostFacts } from "../../oci/host.js";
import { defaultMounts, podBindMount } from "./mounts.js";
import { clampOomScoreAdj, int64 } from "./resources.js";
import { resolveSeccomp } from "./security-profiles.js";
import { OCI_VERSION, type Mount, type Namespace, type Spec } from "../../oci/spec.js";
import { validateSysctls } from "../../oci/sysctls.js";
import { podUserns } from "../userns/options.js";
import { useHostSys } from "./userns.js";

/** Pod-level files and directories the daemon prepared, bind-mounted into every container of the pod. */
export interface PodFiles {
  resolvConf: string;
  hosts: string;
  hostname: string;
  /** The pod's /dev/shm tmpfs; not used when the pod shares the host's IPC namespace. */
  shm: string;
}

export interface SandboxSpecInput {
  /** The sandbox id (the container id runc sees). */
  id: string;
  config: PodSandboxConfig;
  /** The directory holding the static /pause binary; mounted read-only. */
  rootfsPath: string;
  /** The pod's network namespace file; null for a host-network pod. */
  netnsPath: string | null;
  files: PodFiles;
  /** Overrides config.linux.cgroupParent. */
  cgroupParent?: string;
  cgroupDriver?: CgroupDriver;
  runtimeHandler?: string;
  /** The pod's pinned user namespace (src/cri/userns/pin.ts), for a pod with user namespace mode POD. */
  usernsPath?: string;
  /** The process to run; default ["/pause"]. */
  args?: string[];
  host?: HostFacts;
}

/** Namespace modes of a pod, with containerd's defaults for unset options (all POD). */
export function podNamespaceModes(config: PodSandboxConfig): { network: number; pid: number; ipc: number } {
  const ns = config.linux?.securityContext?.namespaceOptions;
  return {
    network: ns?.network ?? NamespaceMode.POD,
    pid: ns?.pid ?? NamespaceMode.POD,
    ipc: ns?.ipc ?? NamespaceMode.POD,
  };
}

export function buildSandboxSpec(input: SandboxSpecInput): Spec {
  const host = input.host ?? probeHost();
  const { config } = input;
  const sc = config.linux?.securityContext;
  const modes = podNamespaceModes(config);
  const hostNetwork = modes.network === NamespaceMode.NODE;
  const hostIpc = modes.ipc === NamespaceMode.NODE;
  const hostPid = modes.pid === NamespaceMode.NODE;

  // A pod with its own user namespace (hostUsers: false) runs in the one berthd made and
  // pinned with the pod's netns (which it owns), or alone with the host's network; the
  // mappings are repeated for the runtime, which checks them against the namespace it joins.
  const userns = podUserns(sc?.namespaceOptions?.usernsOptions);
  const namespaces: Namespace[] = [];
  if (userns) {
    if (!input.usernsPath) throw new InternalError("a pod with a user namespace needs its pinned namespace path");
    namespaces.push({ type: "user", path: input.usernsPath });
  }
  namespaces.push({ type: "mount" });
  if (!hostPid) namespaces.push({ type: "pid" });
  if (!hostIpc) namespaces.push({ type: "ipc" });
  if (!hostNetwork) {
    if (!input.netnsPath) {
      throw new InvalidArgumentError("the pod does not use the host network but no network namespace path was given");
    }
    namespaces.push({ type: "network", path: input.netnsPath });
    namespaces.push({ type: "uts" });
  }

  const sysctls = { ...(config.linux?.sysctls ?? {}) };
  validateSysctls(sysctls, { net: !hostNetwork, ipc: !hostIpc, uts: !hostNetwork });

  // The pause process runs as the pod's RunAsUser/RunAsGroup when set, else as the pause
  // image's 65535:65535; there is no /etc/passwd to look names up in.
  let uid = SANDBOX_DEFAULT_UID;
  let gid = SANDBOX_DEFAULT_GID;
  if (sc?.runAsUser) {
    uid = int64(sc.runAsUser.value, "run_as_user");
    gid = sc.runAsGroup ? int64(sc.runAsGroup.value, "run_as_group") : 0;
  } else if (sc?.runAsGroup) {
    throw new InvalidArgumentError("pod RunAsGroup is set without RunAsUser: set a user too");
  }
  const additionalGids = [...new Set((sc?.supplementalGroups ?? []).map((g) => int64(g, "supplemental group")))].sort(
    (a, b) => a - b,
  );

  const mounts: Mount[] = defaultMounts().filter((m) => m.destination !== "/dev/shm");
  const shmSource = hostIpc ? "/dev/shm" : input.files.shm;
  mounts.push(podBindMount(shmSource, "/dev/shm", true, ["nosuid", "nodev", "noexec"]));
  mounts.push(podBindMount(input.files.resolvConf, "/etc/resolv.conf", true, ["nosuid", "nodev", "noexec"]));
  mounts.push(podBindMount(input.files.hosts, "/etc/hosts", true, ["nosuid", "nodev", "noexec"]));
  mounts.push(podBindMount(input.files.hostname, "/etc/hostname", true, ["nosuid", "nodev", "noexec"]));
  if (userns && hostNetwork) useHostSys(mounts);

  const seccomp = resolveSeccomp({
    profile: sc?.seccomp,
    legacyPath: sc?.seccompProfilePath,
    // Unset means unconfined, as containerd does for the sandbox. The pause process runs
    // no code anyone else chose, as uid 65535 with no capabilities and no_new_privs, and
    // only waits for signals: a filter guards nothing there, while building one is the
    // dearest part of `runc create` for the sandbox: runc compiles it with libseccomp in runc
    // init, CPU that a loaded node pays many times over in wall time (p50 175 against 115 ms
    // at load 13; 33 against 32 ms at load 2; 2026-12-04). A pod that asks for RuntimeDefault
    // (kubelet's SeccompDefault does) or a Localhost profile gets it.
    unsetProfile: "",
    privileged: sc?.privileged ?? false,
    capabilities: [],
    kernelRelease: host.kernelRelease,
    // The pause binary is native (berth's own is built on the node; a pause image is pulled
    // for the node's platform) and makes a handful of native syscalls, so the default filter's
    // i386 and x32 sections are dead weight: runc builds a BPF section per ABI, and creating
    // the sandbox took 30 ms with three against 22 ms with one. Other ABIs' syscalls are then
    // killed rather than filtered, which is stricter, not looser. App containers keep every ABI.
    nativeArchOnly: true,
  });

  const annotations: Record<string, string> = {
    [ANNOTATION_CONTAINER_TYPE]: CONTAINER_TYPE_SANDBOX,
    [ANNOTATION_SANDBOX_ID]: input.id,
    [ANNOTATION_SANDBOX_NAME]: config.metadata?.name ?? "",
    [ANNOTATION_SANDBOX_NAMESPACE]: config.metadata?.namespace ?? "",
    [ANNOTATION_SANDBOX_UID]: config.metadata?.uid ?? "",
    [ANNOTATION_SANDBOX_LOG_DIR]: config.logDirectory ?? "",
  };
  const res = config.linux?.resources;
  if (res) {
    annotations[ANNOTATION_SANDBOX_CPU_PERIOD] = String(res.cpuPeriod);
    annotations[ANNOTATION_SANDBOX_CPU_QUOTA] = String(res.cpuQuota);
    annotations[ANNOTATION_SANDBOX_CPU_SHARES] = String(res.cpuShares);
    annotations[ANNOTATION_SANDBOX_MEMORY] = String(res.memoryLimitInBytes);
  }
  if (input.runtimeHandler) annotations[ANNOTATION_RUNTIME_HANDLER] = input.runtimeHandler;

  const spec: Spec = {
    ociVersion: OCI_VERSION,
    process: {
      terminal: false,
      user: { uid, gid, ...(additionalGids.length > 0 ? { additionalGids } : {}) },
      args: input.args ?? ["/pause"],
      env: [DEFAULT_PATH_ENV],
      cwd: "/",
      capabilities: { bounding: [], effective: [], inheritable: [], permitted: [], ambient: [] },
      noNewPrivileges: true,
      oomScoreAdj: clampOomScoreAdj(SANDBOX_OOM_SCORE_ADJ, host.oomScoreAdj),
    },
    root: { path: input.rootfsPath, readonly: true },
    mounts,
    annotations,
    linux: {
      namespaces,
      cgroupsPath: cgroupsPath(input.cgroupParent ?? config.linux?.cgroupParent ?? "", input.id, input.cgroupDriver),
      resources: {
        devices: [{ allow: false, access: "rwm" }],
        cpu: { shares: SANDBOX_CPU_SHARES },
      },
      maskedPaths: [...DEFAULT_MASKED_PATHS],
      readonlyPaths: [...DEFAULT_READONLY_PATHS],
    },
  };
  // A hostname can only be set in the pod's own UTS namespace (never the node's).
  if (!hostNetwork && config.hostname) spec.hostname = config.hostname;
  if (userns) {
    spec.linux.uidMappings = userns.uidMappings;
    spec.linux.gidMappings = userns.gidMappings;
  }
  if (Object.keys(sysctls).length > 0) spec.linux.sysctl = sysctls;
  if (seccomp) spec.linux.seccomp = seccomp;
  return spec;
}
