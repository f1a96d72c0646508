// ListPodSandbox (containerd's sandbox_list.go): from the status store, no shim round trip.
import type { PodSandbox, PodSandboxFilter } from "../../gen/cri/runtime/v1/api.js";
import { matchesLabels } from "../context.js";
import { sandboxView } from "../store/index.js";
import type { SandboxDeps } from "./deps.js";

export function listPodSandboxes(d: Pick<SandboxDeps, "store">, filter: PodSandboxFilter | undefined): PodSandbox[] {
  let entries = d.store.list().filter((e) => e.status.phase !== "creating");
  if (filter?.id) entries = entries.filter((e) => e.id.startsWith(filter.id));
  const out: PodSandbox[] = [];
  for (const e of entries) {
    const config = e.config;
    if (!matchesLabels(config.labels, filter?.labelSelector)) continue;
    const { state } = sandboxView(e.status);
    if (filter?.state && filter.state.state !== state) continue;
    out.push({
      id: e.id,
      metadata: config.metadata,
      state,
      createdAt: e.info.createdAt,
      labels: config.labels,
      annotations: config.annotations,
      runtimeHandler: e.info.runtimeHandler,
    });
  }
  return out;
}
