// CreateContainer: prepares the writable snapshot and mounts it as the bundle's rootfs,
// builds the OCI spec from the CRI config and the image, and records the container CREATED
// (containerd's container_create.go). Every step is undone, last first, when a later one fails.
import { mkdirSync } from "node:fs";
import { dirname, isAbsolute, join } from "node:path";
import { ContainerConfig, ContainerEventType } from "../../gen/cri/runtime/v1/api.js";
import { podCgroupParent } from "../../oci/index.js";
import { buildContainerSpec } from "../spec/index.js";
import { mountAll, unmountAll } from "../../snapshots/mount.js";
import { nowNs } from "../../util/clock.js";
import { FailedPreconditionError, InvalidArgumentError, NotFoundError } from "../../util/errors.js";
import { CRI_NAMESPACE as NS, runUndo } from "../context.js";
import { injectCdiDevices, requestedCdiDevices } from "../cdi/inject.js";
import { DEFAULT_CDI_SPEC_DIRS } from "../cdi/registry.js";
import { newId } from "../ids.js";
import { prepareImageVolumes } from "../image-volumes.js";
import type { Mount } from "../../snapshots/types.js";
import type { ContainerEntry, SandboxEntry } from "../store/index.js";
import { deleteContainerRecord } from "./remove.js";
import type { ContainerDeps } from "./deps.js";
import { publishContainerEvent } from "./events.js";
import { effectiveStopSignal } from "../stop-signal.js";
import { podUsernsPath } from "../userns/pin.js";
import { hostRoot, podUserns } from "../userns/options.js";
import { idmapScratch, mountIdmappedRootfs } from "../userns/rootfs.js";
import { rememberImageRef } from "./status.js";
import { notifyNri, nriOf, nriContainer, nriPod } from "../nri-view.js";

export function createContainer(d: ContainerDeps, pod: SandboxEntry, config: ContainerConfig): Promise<string> {
  // A plugin joining meanwhile gets the container in its snapshot or as an event, never neither.
  return nriOf(d).blockSync(() => create(d, pod, config));
}

async function create(d: ContainerDeps, pod: SandboxEntry, config: ContainerConfig): Promise<string> {
  const name = config.metadata?.name;
  if (!name) throw new InvalidArgumentError("container config must have metadata.name");
  if (!config.image?.image) throw new InvalidArgumentError("container config must name an image");
  if (pod.status.phase !== "ready") {
    throw new FailedPreconditionError(
      `pod sandbox ${pod.id} is not ready (${pod.status.phase}): cannot create containers in it`,
    );
  }
  // A sandbox whose exit is known is refused from the record, as containerd checks its
  // sandbox store (the pod is NOTREADY for good: kubelet makes a new one).
  if (pod.status.exitedAt > 0n || pod.status.exitHeard) {
    throw new FailedPreconditionError(`the sandbox process of pod ${pod.id} is not running`);
  }
  const handler = pod.info.runtimeHandler;
  const idmapped = config.mounts.find((m) => m.uidMappings.length > 0 || m.gidMappings.length > 0);
  if (idmapped && d.handlerFeatures && !d.handlerFeatures[handler]?.idmapMounts) {
    throw new FailedPreconditionError(
      `mount of ${idmapped.hostPath} asks for an idmapped mount, which runtime handler ${JSON.stringify(handler)} cannot make (runc 1.2+ and Linux 5.12+ are needed)`,
    );
  }
  const rro = config.mounts.find((m) => m.recursiveReadOnly);
  if (rro && d.handlerFeatures && !d.handlerFeatures[handler]?.recursiveReadOnlyMounts) {
    throw new FailedPreconditionError(
      `mount of ${rro.hostPath} asks to be recursively read-only, which runtime handler ${JSON.stringify(handler)} cannot make (its runtime lists no "rro" mount option, or this kernel failed berthd's start probe)`,
    );
  }
  const imageRef = config.image.image;
  const generation = d.images.generation;
  const imageId = d.images.resolveId(imageRef);
  const image = imageId ? await d.images.status(imageId) : undefined;
  if (!imageId || !image) throw new NotFoundError(`image ${JSON.stringify(imageRef)} not found; pull it first`);

  const id = newId();
  const rootfs = d.bundles.rootfs(id);
  const podConfig = pod.config;
  const logPath = podConfig.logDirectory && config.logPath ? join(podConfig.logDirectory, config.logPath) : "";
  if (logPath && !isAbsolute(logPath))
    throw new InvalidArgumentError(`log path ${logPath} must be absolute (set the pod's log_directory)`);
  const stopSignal = effectiveStopSignal(config.stopSignal, image.config.StopSignal);
  // The writable snapshot's files are made first, under a temporary name (the snapshotter's
  // start-up cleanup removes them after a crash); the container's record and the snapshot's
  // then commit in one transaction, so a create costs one commit (one sync) less.
  const staged = await d.images.stageRootfs(imageId, id, { labels: { "berth.io/container": id } });
  let entry: ContainerEntry;
  let mounts: Mount[];
  try {
    ({ entry, also: mounts } = d.store.insertWith(
      {
        id,
        sandboxId: pod.id,
        name,
        attempt: config.metadata?.attempt ?? 0,
        config: Buffer.from(ContainerConfig.encode(config).finish()),
        imageRef,
        imageId,
        logPath,
        stopSignal,
        createdAt: nowNs(),
      },
      () => staged.commit(),
    ));
  } catch (err) {
    await staged.discard();
    throw err;
  }
  // Its image_ref, resolved here once rather than on every ContainerStatus.
  rememberImageRef(d, entry, generation, image.repoDigests[0] ?? imageId);
  const undo: (() => unknown)[] = [() => deleteContainerRecord(d, id)];
  try {
    await d.bundles.create(id, { rootfs: true });
    undo.push(() => d.bundles.remove(id));
    // berthd mounts the rootfs itself (rather than handing the mounts to the shim) so the
    // spec can be built from the image's /etc/passwd and /etc/group, and so every shim
    // (berth's or containerd's) finds the same ready bundle.
    // A pod with its own user namespace gets the image's layers idmapped through it.
    const userns = podUserns(podConfig.linux?.securityContext?.namespaceOptions?.usernsOptions);
    const usernsPath = userns ? podUsernsPath(pod.info.podDir) : undefined;
    undo.push(() => unmountAll(rootfs));
    if (userns && usernsPath)
      await mountIdmappedRootfs(mounts, rootfs, usernsPath, hostRoot(userns), idmapScratch(d.bundles.dir(id)));
    else mountAll(mounts, rootfs);
    // kubelet made the pod's log dir already: one mkdir that finds it, done synchronously.
    if (logPath) mkdirSync(dirname(logPath), { recursive: true, mode: 0o755 });

    const volumeMounts = await prepareImageVolumes(d.images, id, d.bundles.dir(id), config.mounts, undo);

    // The sandbox's pid as RunPodSandbox or recovery learnt it; only a pod whose shim did not
    // answer at recovery (pid unknown) costs a call to the shim here.
    const sandboxPid =
      pod.pid > 0 && !pod.status.unknown
        ? pod.pid
        : await runningPid(d, pod.id, `the sandbox process of pod ${pod.id} is not running`);
    const podDir = pod.info.podDir;
    const spec = buildContainerSpec({
      id,
      sandboxId: pod.id,
      container: { ...config, mounts: volumeMounts },
      sandbox: podConfig,
      image: { name: imageRef, config: image.config },
      rootfsPath: rootfs,
      podPaths: {
        hostname: join(podDir, "hostname"),
        hosts: join(podDir, "hosts"),
        resolvConf: join(podDir, "resolv.conf"),
        shm: join(podDir, "shm"),
        netnsPath: pod.info.netnsPath || null,
        ipcPath: `/proc/${sandboxPid}/ns/ipc`,
        utsPath: `/proc/${sandboxPid}/ns/uts`,
        pidNamespacePath: `/proc/${sandboxPid}/ns/pid`,
        targetPidNamespacePath: await targetPidNamespace(d, config, pod.id),
        usernsPath,
      },
      // Nested in the pod's cgroup (berth's own /berth/<podId> when kubelet gave no parent).
      cgroupParent: podCgroupParent(podConfig.linux?.cgroupParent, pod.id, d.cgroupDriver),
      cgroupDriver: d.cgroupDriver,
      runtimeHandler: pod.info.runtimeHandler,
    });
    await injectCdiDevices(spec, requestedCdiDevices(config), d.cdiSpecDirs ?? DEFAULT_CDI_SPEC_DIRS);
    // NRI plugins see the container as its spec says and may adjust it; it stays unlisted
    // (creating) until they all answered, and a refusal rolls the create back.
    const nri = nriOf(d);
    if (nri.enabled) {
      const podView = nriPod(pod, d.cgroupDriver);
      const view = nriContainer(entry);
      // Plugins that adjusted the container may have reserved something for it (CPUs, devices):
      // if it is not created after all, they hear it is removed, as containerd's undo does.
      undo.push(() => nri.removeContainer(podView, view));
      const rest = await nri.createContainer(podView, view, spec);
      if (rest.cdiDevices.length > 0)
        await injectCdiDevices(spec, rest.cdiDevices, d.cdiSpecDirs ?? DEFAULT_CDI_SPEC_DIRS);
    }
    d.bundles.writeSpec(id, spec);
    d.store.apply(id, { type: "created" });
  } catch (err) {
    await runUndo(undo, d.log, `create of container ${id}`);
    throw err;
  }
  await notifyNri(d, id, (nri, p, c) => nri.postCreateContainer(p, c));
  await publishContainerEvent(d, id, ContainerEventType.CONTAINER_CREATED_EVENT);
  return id;
}

/** For PID namespace mode TARGET: the running target container's PID namespace (same pod only). */
async function targetPidNamespace(
  d: ContainerDeps,
  config: ContainerConfig,
  sandboxId: string,
): Promise<string | undefined> {
  const ns = config.linux?.securityContext?.namespaceOptions;
  if (ns?.pid !== 3 || !ns.targetId) return undefined;
  const target = d.store.resolve(ns.targetId);
  if (target.info.sandboxId !== sandboxId)
    throw new InvalidArgumentError(`PID namespace target ${target.id} is not in pod ${sandboxId}`);
  const pid = d.runtime.has(NS, target.id)
    ? await runningPid(d, target.id, `PID namespace target container ${target.id} is not running`)
    : 0;
  if (!pid) throw new FailedPreconditionError(`PID namespace target container ${target.id} is not running`);
  return `/proc/${pid}/ns/pid`;
}

/** The pid of a running task, asked of its shim; FailedPrecondition with `notRunning` otherwise. */
async function runningPid(d: ContainerDeps, id: string, notRunning: string): Promise<number> {
  const s = await d.runtime.state(NS, id).catch(() => undefined);
  if (s && s.status === "running" && s.pid > 0) return s.pid;
  throw new FailedPreconditionError(notRunning);
}
