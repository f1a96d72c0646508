// ListContainers (containerd's container_list.go): from the status store, no shim round trip
// (kubelet polls it every second). Each entry keeps its listed item (`listed`) while its config,
// facts and state stay the same objects and value, so a poll without changes builds nothing
// per container; the filters are checked in the same one pass.
import type { Container, ContainerFilter, ContainerState } from "../../gen/cri/runtime/v1/api.js";
import { matchesLabels } from "../context.js";
import { type ContainerEntry, containerView } from "../store/index.js";
import type { ContainerDeps } from "./deps.js";

export function listContainers(d: ContainerDeps, filter: ContainerFilter | undefined): Container[] {
  const id = filter?.id || undefined;
  const podSandboxId = filter?.podSandboxId || undefined;
  const selector = filter?.labelSelector;
  const labels = selector && Object.keys(selector).length > 0 ? selector : undefined;
  const wanted = filter?.state?.state;
  const out: Container[] = [];
  for (const e of d.store.list()) {
    if (e.status.phase === "creating") continue;
    if (id && !e.id.startsWith(id)) continue;
    if (podSandboxId && !e.info.sandboxId.startsWith(podSandboxId)) continue;
    const { state } = containerView(e.status);
    if (wanted !== undefined && wanted !== state) continue;
    if (labels && !matchesLabels(e.config.labels, labels)) continue;
    out.push(listedItem(e, state));
  }
  return out;
}

/** The entry's item, kept on it: the item only holds the config's and facts' own objects. */
function listedItem(e: ContainerEntry, state: ContainerState): Container {
  const config = e.config;
  const kept = e.listed;
  if (kept && kept.config === config && kept.info === e.info && kept.item.state === state) return kept.item;
  const item: Container = {
    id: e.id,
    podSandboxId: e.info.sandboxId,
    metadata: config.metadata,
    image: {
      image: e.info.imageRef,
      annotations: {},
      userSpecifiedImage: "",
      runtimeHandler: "",
      imageRef: e.info.imageId,
    },
    // The image id, as containerd lists it: kubelets before 1.30 (no image_id) take a listed
    // container's image_ref as its image ID, which image GC matches against image ids to
    // keep images in use; a repo digest here would let GC remove a running container's
    // image. ContainerStatus carries the repo digest.
    imageRef: e.info.imageId,
    state,
    createdAt: e.info.createdAt,
    labels: config.labels,
    annotations: config.annotations,
    imageId: e.info.imageId,
  };
  e.listed = { config, info: e.info, item };
  return item;
}
