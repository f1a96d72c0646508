// RunPodSandbox (containerd's sandbox_run.go). A pod is a network namespace set up by CNI, a
// directory of shared files (hostname, hosts, resolv.conf, /dev/shm) and a sandbox process
// (berth's static pause) holding the pod's IPC/UTS/PID namespaces, started as a task in the
// pod's shim. Every step is undone in reverse when a later one fails. A pod kubelet gives no
// cgroup parent gets its own pod cgroup (/berth/<podId>), removed with the pod.
import { mkdir, rm } from "node:fs/promises";
import { ContainerEventType, NamespaceMode, PodSandboxConfig, Protocol } from "../../gen/cri/runtime/v1/api.js";
import type { PortMapping } from "../../network/index.js";
import { podCgroupParent } from "../../oci/index.js";
import { buildSandboxSpec, podNamespaceModes } from "../spec/index.js";
import { mountAll, unmountAll } from "../../snapshots/mount.js";
import { nowNs } from "../../util/clock.js";
import { FailedPreconditionError, InvalidArgumentError, NotFoundError } from "../../util/errors.js";
import { podUserns, type PodUserns } from "../userns/options.js";
import { pinPodNamespaces, podUsernsPath, unpinNamespace } from "../userns/pin.js";
import { CRI_NAMESPACE as NS, runUndo } from "../context.js";
import { newId } from "../ids.js";
import { mountShm, unmountShm, writePodFiles, writePodHosts } from "../pod-files.js";
import { removeOwnCgroup } from "./cgroup.js";
import type { SandboxDeps } from "./deps.js";
import { publishSandboxEvent } from "./events.js";
import { noticeSandboxExit } from "./exit.js";
import { nriOf, nriPod } from "../nri-view.js";

const protocols: Record<number, PortMapping["protocol"]> = {
  [Protocol.TCP]: "tcp",
  [Protocol.UDP]: "udp",
  [Protocol.SCTP]: "sctp",
};

export function runPodSandbox(d: SandboxDeps, config: PodSandboxConfig, runtimeHandler: string): Promise<string> {
  // A plugin joining meanwhile gets the pod in its snapshot or as an event, never neither.
  return nriOf(d).blockSync(() => run(d, config, runtimeHandler));
}

async function run(d: SandboxDeps, config: PodSandboxConfig, runtimeHandler: string): Promise<string> {
  const md = config.metadata;
  if (!md?.name || !md.namespace)
    throw new InvalidArgumentError("pod sandbox config must have metadata.name and metadata.namespace");
  let handler;
  try {
    handler = d.runtimeClasses.get(runtimeHandler);
  } catch (err) {
    if (err instanceof NotFoundError) {
      throw new NotFoundError(
        `unknown runtime handler ${JSON.stringify(runtimeHandler)}: configure it under [runtime.handlers] (have: ${d.runtimeClasses.names().join(", ")})`,
      );
    }
    throw err;
  }
  const modes = podNamespaceModes(config);
  const hostNetwork = modes.network === NamespaceMode.NODE;
  const hostIpc = modes.ipc === NamespaceMode.NODE;
  const userns = podUserns(config.linux?.securityContext?.namespaceOptions?.usernsOptions);
  checkHandlerCan(d, handler.name, userns, hostNetwork);

  const id = newId();
  const podDir = d.bundles.podDir(id);
  const bundle = d.bundles.dir(id);
  d.store.insert({
    id,
    name: md.name,
    namespace: md.namespace,
    uid: md.uid,
    attempt: md.attempt,
    config: Buffer.from(PodSandboxConfig.encode(config).finish()),
    createdAt: nowNs(),
    runtimeHandler: handler.name,
    netnsPath: "",
    ips: [],
    podDir,
  });
  const undo: (() => unknown)[] = [() => d.store.delete(id)];
  // Phase durations, logged at debug: where RunPodSandbox time goes (bench/cri.bench.ts).
  const t0 = performance.now();
  const phases: Record<string, number> = {};
  const mark = (name: string) => (phases[name] = Math.round(performance.now() - t0));
  let networkSettled: Promise<void> | undefined;
  try {
    await mkdir(podDir, { recursive: true, mode: 0o711 });
    undo.push(() => rm(podDir, { recursive: true, force: true }));
    // A pod with its own user namespace: made with its netns (which it must own) when CNI
    // asks for the netns, or alone with the host's network, pinned in the pod dir for the
    // sandbox and containers to join.
    const usernsPath = userns ? podUsernsPath(podDir) : undefined;
    if (usernsPath) undo.push(() => unpinNamespace(usernsPath));
    if (userns && usernsPath && hostNetwork) await pinPodNamespaces(usernsPath, null, userns);

    // The network's CNI ADD (plugin execs, 2 or more) and the sandbox's `runc create` are the two
    // long steps, and the second needs only the netns path: both run at once, and the pause
    // starts once both are done. /etc/hosts gets the pod IP when CNI gives it (in place, so
    // the sandbox's bind mount of it shows it); no container can be made before that.
    let netnsPath = "";
    let network: Promise<string[]> | undefined;
    if (!hostNetwork) {
      undo.push(() => d.network.teardownPod(id));
      let netnsReady!: (path: string) => void;
      const netns = new Promise<string>((resolve) => (netnsReady = resolve));
      const setup = d.network.setupPod({
        podId: id,
        name: md.name,
        namespace: md.namespace,
        uid: md.uid,
        portMappings: config.portMappings
          .filter((p) => p.hostPort > 0)
          .map((p) => ({
            hostPort: p.hostPort,
            containerPort: p.containerPort,
            protocol: protocols[p.protocol] ?? "tcp",
            hostIP: p.hostIp || undefined,
          })),
        makeNetns: userns && usernsPath ? (path) => pinPodNamespaces(usernsPath, path, userns) : undefined,
        onNetns: netnsReady,
        dns: config.dnsConfig
          ? {
              servers: config.dnsConfig.servers,
              searches: config.dnsConfig.searches,
              options: config.dnsConfig.options,
            }
          : undefined,
      });
      network = setup.then((net) => {
        mark("network");
        const ips = net.ips.map((i) => i.address);
        d.store.setNetwork(id, net.netnsPath, ips);
        return ips;
      });
      // Settled before any undo runs (a failure of the other branch waits for this one).
      networkSettled = network.then(
        () => undefined,
        () => undefined,
      );
      netnsPath = await Promise.race([netns, setup.then((net) => net.netnsPath)]);
      mark("netns");
    }

    const files = await writePodFiles({
      podDir,
      hostname: config.hostname,
      hostNetwork,
      dns: config.dnsConfig,
      ip: undefined,
    });
    if (!hostIpc) {
      await mountShm(files.shm);
      undo.push(() => unmountShm(files.shm));
    }

    // The pause process of a pod with a user namespace reaches its rootfs as the pod's root,
    // which cannot pass berthd's 0700 root dir: it gets a read-only bind of the shared
    // sandbox rootfs in its bundle (under the 0711 state dir), as containers have theirs.
    await d.bundles.create(id, { rootfs: userns !== null });
    undo.push(() => d.bundles.remove(id));
    if (userns) {
      undo.push(() => unmountAll(d.bundles.rootfs(id)));
      mountAll([{ type: "bind", source: d.sandboxRootfs, options: ["rbind", "ro"] }], d.bundles.rootfs(id));
    }
    const spec = buildSandboxSpec({
      id,
      config,
      rootfsPath: userns ? d.bundles.rootfs(id) : d.sandboxRootfs,
      netnsPath: netnsPath || null,
      files,
      cgroupParent: podCgroupParent(config.linux?.cgroupParent, id, d.cgroupDriver),
      cgroupDriver: d.cgroupDriver,
      runtimeHandler: handler.name,
      usernsPath,
    });
    d.bundles.writeSpec(id, spec);
    mark("spec");

    // Runs after the task's delete (undo is last-first): runc leaves the pod level behind.
    undo.push(() => removeOwnCgroup(d, id, config));
    // Started right after (NRI plugins hear of the pod once it runs): the shim may run the
    // pause at Create, one runtime command instead of two; the Start below confirms it.
    await d.runtime.createTask({ namespace: NS, id, bundle, handler: handler.name, sandboxId: id, startAtOnce: true });
    mark("createTask");
    undo.push(async () => {
      await d.runtime.kill(NS, id, 9).catch(() => {});
      await d.runtime.delete(NS, id);
    });
    if (network) {
      const ips = await network;
      if (ips[0]) await writePodHosts(podDir, config.hostname, ips[0]);
    }
    d.store.setPid(id, await d.runtime.start(NS, id));
    mark("start");
    // NRI plugins see the pod once it runs and before anyone else can: it is listed (and
    // READY) only after they all accepted it, and a refusal rolls it all back (containerd).
    const nri = nriOf(d);
    if (nri.enabled) {
      const entry = d.store.get(id);
      if (entry) {
        const view = nriPod(entry, d.cgroupDriver, entry.pid);
        // Plugins that accepted the pod may have reserved something for it: a later refusal
        // (another plugin's) tells them it is gone, as containerd does.
        undo.push(() => nri.removePodSandbox(view));
        await nri.runPodSandbox(view);
      }
      mark("nri");
    }
    d.store.apply(id, { type: "ready" });
    d.log.debug({ pod: id, phasesMs: phases }, "pod sandbox running");
  } catch (err) {
    await networkSettled;
    await runUndo(undo, d.log, `RunPodSandbox ${id}`);
    throw err;
  }
  await publishSandboxEvent(d, id, ContainerEventType.CONTAINER_CREATED_EVENT);
  await publishSandboxEvent(d, id, ContainerEventType.CONTAINER_STARTED_EVENT);
  // The sandbox process exited while RunPodSandbox still ran: handle it now.
  if (d.store.get(id)?.status.exitHeard) noticeSandboxExit(d, id);
  return id;
}

/** Refuses, before anything is made, a pod its handler's runtime cannot run. */
function checkHandlerCan(d: SandboxDeps, handler: string, userns: PodUserns | null, hostNetwork: boolean): void {
  const f = d.handlerFeatures?.[handler];
  if (f && !f.installed) {
    throw new FailedPreconditionError(
      `runtime handler ${JSON.stringify(handler)}: its OCI runtime is not installed on this node (see [runtime.handlers.${handler}] binary_name)`,
    );
  }
  if (!userns) return;
  if (!f?.userNamespaces) {
    const can = Object.entries(d.handlerFeatures ?? {})
      .filter(([, x]) => x.userNamespaces)
      .map(([n]) => n);
    throw new FailedPreconditionError(
      `runtime handler ${JSON.stringify(handler)} cannot run pods with a user namespace (hostUsers: false): ` +
        `its runtime makes no idmapped mounts or this kernel cannot (runc 1.2+ and Linux 5.19+ are needed; ` +
        `handlers that can: ${can.length ? can.join(", ") : "none"})`,
    );
  }
  if (hostNetwork && !f.userNamespacesHostNetwork) {
    const can = Object.entries(d.handlerFeatures ?? {})
      .filter(([, x]) => x.userNamespacesHostNetwork)
      .map(([n]) => n);
    throw new FailedPreconditionError(
      `runtime handler ${JSON.stringify(handler)} cannot run a pod with a user namespace on the host network: ` +
        `sysfs cannot be mounted by a user namespace that does not own the network namespace, so /sys must be ` +
        `the host's bound recursively read-only, which needs the "rro" mount option in the runtime and a kernel ` +
        `that let berthd's probe do it (see berthd's start log; handlers that can: ${can.length ? can.join(", ") : "none"})`,
    );
  }
}
