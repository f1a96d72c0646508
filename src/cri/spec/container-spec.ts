// The OCI spec of a container, from its CRI ContainerConfig, the pod's config and the
// image config, with the semantics of containerd's CRI plugin (containerSpec and
// containerSpecOpts in pkg/cri/server/container_create_linux.go, release 1.6/1.7) so a
// pod behaves the same on berth as on containerd. Where berth chooses differently the
// comment says so.

import {
  NamespaceMode,
  SupplementalGroupsPolicy,
  type ContainerConfig,
  type PodSandboxConfig,
} from "../../gen/cri/runtime/v1/api.js";
import { InternalError, InvalidArgumentError } from "../../util/errors.js";
import {
  ANNOTATION_CONTAINER_NAME,
  ANNOTATION_CONTAINER_TYPE,
  ANNOTATION_IMAGE_NAME,
  ANNOTATION_RUNTIME_HANDLER,
  ANNOTATION_SANDBOX_ID,
  ANNOTATION_SANDBOX_NAME,
  ANNOTATION_SANDBOX_NAMESPACE,
  ANNOTATION_SANDBOX_UID,
  CONTAINER_TYPE_CONTAINER,
} from "../../oci/annotations.js";
import { applyCapabilityChanges, DEFAULT_CAPABILITIES } from "../../oci/capabilities.js";
import { cgroupsPath, type CgroupDriver } from "../../oci/cgroups-path.js";
import { DEFAULT_PATH_ENV } from "../../oci/defaults.js";
import { criDevices, hostDevices } from "./devices.js";
import { probeHost, type HostFacts } from "../../oci/host.js";
import {
  cgroupMount,
  cleanPath,
  criBindMount,
  defaultMounts,
  mountDepth,
  podBindMount,
  type BindOptions,
} from "./mounts.js";
import { applyResources, clampOomScoreAdj, int64 } from "./resources.js";
import { podNamespaceModes, type PodFiles } from "./sandbox-spec.js";
import { resolveSeccomp } from "./security-profiles.js";
import { resolveAppArmor } from "./apparmor.js";
import { systemAppArmorHost, type AppArmorHost } from "../../oci/apparmor-host.js";
import { DEFAULT_APPARMOR_PROFILE } from "../../oci/apparmor-profile.js";
import { OCI_VERSION, type Device, type Mount, type Namespace, type Resources, type Spec } from "../../oci/spec.js";
import { resolveProcessUser, rootfsUserLookup, type UserLookup } from "../../oci/user.js";
import { applyContainerUserns, containerUserns } from "./userns.js";

/** The runtime part of an OCI image config (same keys as Docker's). */
export interface ImageProcessConfig {
  User?: string;
  Env?: string[] | null;
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  WorkingDir?: string;
  StopSignal?: string;
}

/** Where the container finds its pod: namespace files of the sandbox and the pod's shared files. */
export interface PodPaths extends PodFiles {
  /** The pod's network namespace file; null when the pod uses the host network. */
  netnsPath: string | null;
  /** The sandbox process's IPC namespace (/proc/PID/ns/ipc); unused for host-IPC pods. */
  ipcPath?: string;
  /** The sandbox process's UTS namespace (/proc/PID/ns/uts); unused for host-network pods. */
  utsPath?: string;
  /** The sandbox process's PID namespace, joined when the container's PID mode is POD. */
  pidNamespacePath?: string;
  /** The target container's PID namespace, joined when the container's PID mode is TARGET. */
  targetPidNamespacePath?: string;
  /** The sandbox process's user namespace, joined when the pod has its own (user namespace mode POD). */
  usernsPath?: string;
}

export interface ContainerSpecInput {
  /** The container id (the id runc sees). */
  id: string;
  sandboxId: string;
  container: ContainerConfig;
  sandbox: PodSandboxConfig;
  image: { name?: string; config: ImageProcessConfig };
  /** The container's mounted rootfs (root.path). */
  rootfsPath: string;
  podPaths: PodPaths;
  /** Overrides sandbox.linux.cgroupParent. */
  cgroupParent?: string;
  cgroupDriver?: CgroupDriver;
  runtimeHandler?: string;
  /** Users and groups of the image; default: read from rootfsPath without leaving it. */
  userLookup?: UserLookup;
  /** Seccomp profile when the CRI sets none; "" (containerd's default) is unconfined. */
  unsetSeccompProfile?: string;
  /** AppArmor profile RuntimeDefault means; generated and loaded where AppArmor is enabled. */
  appArmorDefaultProfile?: string;
  /** The host's AppArmor; default: the real one, enabled as host.apparmorEnabled says. */
  appArmorHost?: AppArmorHost;
  host?: HostFacts;
  /** Mount table reader for propagation checks (tests). */
  mountInfo?: BindOptions["mountInfo"];
}

/**
 * Process args from the CRI command/args and the image Entrypoint/Cmd (Docker's rules):
 * a CRI command replaces the entrypoint AND drops the image Cmd; CRI args replace Cmd;
 * an Entrypoint of [""] means none.
 */
export function mergeProcessArgs(
  command: readonly string[],
  args: readonly string[],
  image: ImageProcessConfig,
): string[] {
  let cmd = [...command];
  let rest = [...args];
  if (cmd.length === 0) {
    if (rest.length === 0) rest = [...(image.Cmd ?? [])];
    const ep = image.Entrypoint ?? [];
    if (!(ep.length === 1 && ep[0] === "")) cmd = [...ep];
  }
  const all = [...cmd, ...rest];
  if (all.length === 0) {
    throw new InvalidArgumentError(
      "no command specified: set the container's command or args, or use an image with an entrypoint or cmd",
    );
  }
  return all;
}

/**
 * `defaults` with `overrides` applied by variable name: a `K=V` replaces K or is appended,
 * a bare `K` unsets K (containerd's replaceOrAppendEnvValues).
 */
export function mergeEnv(defaults: readonly string[], overrides: readonly string[]): string[] {
  const out: (string | null)[] = [...defaults];
  const index = new Map<string, number>();
  out.forEach((e, i) => index.set(e!.split("=", 1)[0]!, i));
  for (const v of overrides) {
    const eq = v.indexOf("=");
    const key = eq < 0 ? v : v.slice(0, eq);
    const at = index.get(key);
    if (eq < 0) {
      if (at !== undefined) out[at] = null;
      continue;
    }
    if (at !== undefined) out[at] = v;
    else {
      index.set(key, out.length);
      out.push(v);
    }
  }
  return out.filter((e): e is string => e !== null && e !== "");
}

function envValue(v: Buffer | string): string {
  return typeof v === "string" ? v : v.toString("utf8");
}

export function buildContainerSpec(input: ContainerSpecInput): Spec {
  const host = input.host ?? probeHost();
  const { container: cfg, sandbox } = input;
  const sc = cfg.linux?.securityContext;
  const podSc = sandbox.linux?.securityContext;
  const privileged = sc?.privileged ?? false;
  const imageCfg = input.image.config;

  if (privileged && !podSc?.privileged) {
    throw new InvalidArgumentError(
      "a privileged container is not allowed in a non-privileged pod sandbox: set privileged on the pod's security context too",
    );
  }

  const userns = containerUserns(cfg, sandbox);

  // --- process ---------------------------------------------------------------------
  const args = mergeProcessArgs(cfg.command, cfg.args, imageCfg);
  const cwd = cfg.workingDir || imageCfg.WorkingDir || "/";
  if (!cwd.startsWith("/")) {
    throw new InvalidArgumentError(`working directory ${JSON.stringify(cwd)} must be an absolute path`);
  }
  const base = [DEFAULT_PATH_ENV];
  if (cfg.tty) base.push("TERM=xterm");
  const hostname = sandbox.hostname || host.hostname;
  const env = mergeEnv(mergeEnv(base, [`HOSTNAME=${hostname}`]), [
    ...(imageCfg.Env ?? []),
    ...cfg.envs.map((e) => `${e.key}=${envValue(e.value)}`),
  ]);

  const user = resolveProcessUser(
    {
      runAsUser: sc?.runAsUser ? int64(sc.runAsUser.value, "run_as_user") : undefined,
      runAsUsername: sc?.runAsUsername || undefined,
      runAsGroup: sc?.runAsGroup ? int64(sc.runAsGroup.value, "run_as_group") : undefined,
      supplementalGroups: (sc?.supplementalGroups ?? []).map((g) => int64(g, "supplemental group")),
      strictSupplementalGroups: sc?.supplementalGroupsPolicy === SupplementalGroupsPolicy.Strict,
      imageUser: imageCfg.User,
    },
    input.userLookup ?? rootfsUserLookup(input.rootfsPath),
  );

  // Capabilities: containerd's default set with the CRI add/drop applied, or every
  // capability the daemon holds when privileged (drops are ignored then, as in
  // containerd). The same set goes to bounding, effective and permitted whatever the
  // user: for a non-root user the kernel clears effective/permitted at execve anyway.
  // Ambient is always empty (containerd ignores add_ambient_capabilities).
  const caps = privileged
    ? [...host.capabilities]
    : applyCapabilityChanges(
        DEFAULT_CAPABILITIES,
        sc?.capabilities?.addCapabilities ?? [],
        sc?.capabilities?.dropCapabilities ?? [],
        host.capabilities,
      );

  const resources = cfg.linux?.resources;
  const oomScoreAdj = resources
    ? clampOomScoreAdj(int64(resources.oomScoreAdj, "oom_score_adj"), host.oomScoreAdj)
    : undefined;

  const apparmorProfile = resolveAppArmor({
    profile: sc?.apparmor,
    legacyProfile: sc?.apparmorProfile,
    privileged,
    host: input.appArmorHost ?? systemAppArmorHost(host.apparmorEnabled),
    defaultProfileName: input.appArmorDefaultProfile ?? DEFAULT_APPARMOR_PROFILE,
  });
  const seccomp = resolveSeccomp({
    profile: sc?.seccomp,
    legacyPath: sc?.seccompProfilePath,
    unsetProfile: input.unsetSeccompProfile ?? "",
    privileged,
    capabilities: caps,
    kernelRelease: host.kernelRelease,
  });

  // --- mounts ------------------------------------------------------------------------
  const criMounts = cfg.mounts;
  const inCri = (dest: string) => criMounts.some((m) => cleanPath(m.containerPath) === dest);
  const readonlyRootfs = sc?.readonlyRootfs ?? false;
  const modes = podNamespaceModes(sandbox);
  const nsOpts = sc?.namespaceOptions;

  // Bind mounts: the CRI's, then the pod files it does not override; sorted so that a
  // shallower destination is mounted before (and so does not hide) a deeper one.
  let rootfsPropagation: string | undefined;
  const binds: Mount[] = [];
  for (const m of criMounts) {
    const r = criBindMount(m, { mountInfo: input.mountInfo });
    binds.push(r.mount);
    if (r.rootfsPropagation === "rshared") rootfsPropagation = "rshared";
    else if (r.rootfsPropagation === "rslave" && rootfsPropagation !== "rshared") rootfsPropagation = "rslave";
  }
  const pp = input.podPaths;
  if (!inCri("/etc/hostname")) binds.push(podBindMount(pp.hostname, "/etc/hostname", readonlyRootfs));
  if (!inCri("/etc/hosts")) binds.push(podBindMount(pp.hosts, "/etc/hosts", readonlyRootfs));
  if (!inCri("/etc/resolv.conf")) binds.push(podBindMount(pp.resolvConf, "/etc/resolv.conf", readonlyRootfs));
  if (!inCri("/dev/shm")) {
    const hostIpc = modes.ipc === NamespaceMode.NODE || nsOpts?.ipc === NamespaceMode.NODE;
    binds.push(podBindMount(hostIpc ? "/dev/shm" : pp.shm, "/dev/shm", false));
  }
  const sortedBinds = binds
    .map((m, i) => ({ m, i }))
    .sort((a, b) => mountDepth(a.m.destination) - mountDepth(b.m.destination) || a.i - b.i)
    .map((x) => x.m);

  const bindDests = new Set(binds.map((m) => cleanPath(m.destination)));
  const devSupplied = bindDests.has("/dev");
  const mounts: Mount[] = [];
  for (const m of [...defaultMounts(), cgroupMount()]) {
    const dst = cleanPath(m.destination);
    if (bindDests.has(dst)) continue;
    if (devSupplied && dst.startsWith("/dev/")) continue;
    if (privileged && (m.type === "sysfs" || m.type === "cgroup")) {
      m.options = m.options?.map((o) => (o === "ro" ? "rw" : o));
    }
    mounts.push(m);
  }
  mounts.push(...sortedBinds);

  // --- devices and resources -----------------------------------------------------------
  const linuxResources: Resources = { devices: [{ allow: false, access: "rwm" }] };
  const requested = criDevices(cfg.devices);
  let devices: Device[] = requested.devices;
  linuxResources.devices!.push(...requested.rules);
  if (privileged) {
    const taken = new Set(devices.map((d) => d.path));
    devices = [...devices, ...hostDevices().filter((d) => !taken.has(d.path))];
    linuxResources.devices = [{ allow: true, access: "rwm" }];
  }
  applyResources(linuxResources, resources, host);

  // --- namespaces ----------------------------------------------------------------------
  const need = (path: string | undefined, what: string): string => {
    if (!path) throw new InternalError(`podPaths.${what} is required for this pod`);
    return path;
  };
  const namespaces: Namespace[] = [{ type: "mount" }];
  if (modes.network !== NamespaceMode.NODE) {
    namespaces.push({ type: "network", path: need(pp.netnsPath ?? undefined, "netnsPath") });
    namespaces.push({ type: "uts", path: need(pp.utsPath, "utsPath") });
  }
  if (modes.ipc !== NamespaceMode.NODE) namespaces.push({ type: "ipc", path: need(pp.ipcPath, "ipcPath") });
  switch (nsOpts?.pid ?? NamespaceMode.CONTAINER) {
    case NamespaceMode.CONTAINER:
      namespaces.push({ type: "pid" });
      break;
    case NamespaceMode.POD:
      if (modes.pid === NamespaceMode.NODE) break; // the sandbox itself is in the host's
      namespaces.push({ type: "pid", path: need(pp.pidNamespacePath, "pidNamespacePath") });
      break;
    case NamespaceMode.NODE:
      break;
    case NamespaceMode.TARGET:
      if (!nsOpts?.targetId) throw new InvalidArgumentError("PID namespace mode TARGET needs a target container id");
      namespaces.push({ type: "pid", path: need(pp.targetPidNamespacePath, "targetPidNamespacePath") });
      break;
    default:
      throw new InvalidArgumentError(`unknown PID namespace mode ${nsOpts?.pid}`);
  }
  // cgroup v2 hides the host's hierarchy behind a cgroup namespace (not on v1, nor for
  // privileged containers, for compatibility, as containerd).
  if (host.cgroupV2 && !privileged) namespaces.push({ type: "cgroup" });

  // --- annotations -----------------------------------------------------------------------
  const annotations: Record<string, string> = {
    [ANNOTATION_CONTAINER_TYPE]: CONTAINER_TYPE_CONTAINER,
    [ANNOTATION_SANDBOX_ID]: input.sandboxId,
    [ANNOTATION_SANDBOX_NAMESPACE]: sandbox.metadata?.namespace ?? "",
    [ANNOTATION_SANDBOX_UID]: sandbox.metadata?.uid ?? "",
    [ANNOTATION_SANDBOX_NAME]: sandbox.metadata?.name ?? "",
    [ANNOTATION_CONTAINER_NAME]: cfg.metadata?.name ?? "",
    [ANNOTATION_IMAGE_NAME]: input.image.name ?? cfg.image?.image ?? "",
  };
  if (input.runtimeHandler) annotations[ANNOTATION_RUNTIME_HANDLER] = input.runtimeHandler;

  // Masked and read-only paths: exactly the CRI's lists, none when it sends none; privileged:
  // none. As containerd (container_create.go, issue 5029): kubelet always sends its default
  // lists, and for procMount: Unmasked it sends empty ones, which protobuf cannot tell from
  // absent, so a fallback to berth's own defaults would make Unmasked impossible. A client
  // that wants /proc/kcore hidden (crictl, a bench) must ask, as it must of containerd.
  const maskedPaths = privileged ? [] : [...(sc?.maskedPaths ?? [])];
  const readonlyPaths = privileged ? [] : [...(sc?.readonlyPaths ?? [])];

  const spec: Spec = {
    ociVersion: OCI_VERSION,
    process: {
      terminal: cfg.tty,
      user: {
        uid: user.uid,
        gid: user.gid,
        ...(user.additionalGids.length > 0 ? { additionalGids: user.additionalGids } : {}),
      },
      args,
      env,
      cwd,
      capabilities: { bounding: [...caps], effective: [...caps], inheritable: [], permitted: [...caps], ambient: [] },
      noNewPrivileges: sc?.noNewPrivs ?? false,
    },
    root: { path: input.rootfsPath, readonly: readonlyRootfs },
    mounts,
    annotations,
    linux: {
      namespaces,
      resources: linuxResources,
      cgroupsPath: cgroupsPath(input.cgroupParent ?? sandbox.linux?.cgroupParent ?? "", input.id, input.cgroupDriver),
      maskedPaths,
      readonlyPaths,
    },
  };
  if (oomScoreAdj !== undefined) spec.process.oomScoreAdj = oomScoreAdj;
  if (apparmorProfile) spec.process.apparmorProfile = apparmorProfile;
  if (devices.length > 0) spec.linux.devices = devices;
  if (seccomp) spec.linux.seccomp = seccomp;
  if (rootfsPropagation) spec.linux.rootfsPropagation = rootfsPropagation;
  if (userns) {
    const podFiles = [pp.hostname, pp.hosts, pp.resolvConf];
    applyContainerUserns(spec, userns, pp.usernsPath, podFiles, modes.network === NamespaceMode.NODE);
  }
  return spec;
}
