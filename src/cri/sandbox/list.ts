// ListPodSandbox (containerd's sandbox_list.go): from the status store, no shim round trip.
// Each entry keeps its listed item (`listed`) while its config, facts and state stay the same,
// so a poll without changes builds nothing per pod; the filters are checked in one pass.
import type { PodSandbox, PodSandboxFilter, PodSandboxState } from "../../gen/cri/runtime/v1/api.js";
import { matchesLabels } from "../context.js";
import { type SandboxEntry, sandboxView } from "../store/index.js";
import type { SandboxDeps } from "./deps.js";

export function listPodSandboxes(d: Pick<SandboxDeps, "store">, filter: PodSandboxFilter | undefined): PodSandbox[] {
  const id = filter?.id || undefined;
  const selector = filter?.labelSelector;
  const labels = selector && Object.keys(selector).length > 0 ? selector : undefined;
  const wanted = filter?.state?.state;
  const out: PodSandbox[] = [];
  for (const e of d.store.list()) {
    if (e.status.phase === "creating") continue;
    if (id && !e.id.startsWith(id)) continue;
    const { state } = sandboxView(e.status);
    if (wanted !== undefined && wanted !== state) continue;
    if (labels && !matchesLabels(e.config.labels, labels)) continue;
    out.push(listedItem(e, state));
  }
  return out;
}

/** The entry's item, kept on it: the item only holds the config's and facts' own objects. */
function listedItem(e: SandboxEntry, state: PodSandboxState): PodSandbox {
  const config = e.config;
  const kept = e.listed;
  if (kept && kept.config === config && kept.info === e.info && kept.item.state === state) return kept.item;
  const item: PodSandbox = {
    id: e.id,
    metadata: config.metadata,
    state,
    createdAt: e.info.createdAt,
    labels: config.labels,
    annotations: config.annotations,
    runtimeHandler: e.info.runtimeHandler,
  };
  e.listed = { config, info: e.info, item };
  return item;
}
