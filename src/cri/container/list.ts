// ListContainers (containerd's container_list.go): from the status store, no shim round trip
// (kubelet polls it every second).
import type { Container, ContainerFilter } from "../../gen/cri/runtime/v1/api.js";
import { matchesLabels } from "../context.js";
import { containerView } from "../store/index.js";
import type { ContainerDeps } from "./deps.js";

export function listContainers(d: ContainerDeps, filter: ContainerFilter | undefined): Container[] {
  let entries = d.store.list().filter((e) => e.status.phase !== "creating");
  if (filter?.id) entries = entries.filter((e) => e.id.startsWith(filter.id));
  if (filter?.podSandboxId) entries = entries.filter((e) => e.info.sandboxId.startsWith(filter.podSandboxId));
  const out: Container[] = [];
  for (const e of entries) {
    const config = e.config;
    if (!matchesLabels(config.labels, filter?.labelSelector)) continue;
    const { state } = containerView(e.status);
    if (filter?.state && filter.state.state !== state) continue;
    out.push({
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
    });
  }
  return out;
}
