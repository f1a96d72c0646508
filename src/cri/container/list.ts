// ListContainers (containerd's container_list.go): from the status store, no shim round trip
// (kubelet polls it every second).
import type { Container, ContainerFilter } from "../../gen/cri/runtime/v1/api.js";
import { matchesLabels } from "../context.js";
import { containerView } from "../store/index.js";
import type { ContainerDeps } from "./deps.js";
import { imageRefOf } from "./status.js";

export async function listContainers(d: ContainerDeps, filter: ContainerFilter | undefined): Promise<Container[]> {
  let entries = d.store.list().filter((e) => e.status.phase !== "creating");
  if (filter?.id) entries = entries.filter((e) => e.id.startsWith(filter.id));
  if (filter?.podSandboxId) entries = entries.filter((e) => e.info.sandboxId.startsWith(filter.podSandboxId));
  const out: Container[] = [];
  const imageRefs = new Map<string, Promise<string>>();
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
      imageRef: await imageRefOf(d, e.info.imageId, imageRefs),
      state,
      createdAt: e.info.createdAt,
      labels: config.labels,
      annotations: config.annotations,
      imageId: e.info.imageId,
    });
  }
  return out;
}
