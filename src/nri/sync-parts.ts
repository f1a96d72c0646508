// Splitting the Synchronize snapshot into messages ttrpc can carry. A node's pods and containers
// can exceed one ttrpc message (4 MiB); NRI then sends them in parts, each but the last with
// `more` set, and a plugin that takes parts answers each with `more` echoed (NRI's stub collects
// them and calls the plugin once). Greedy packing in order: every part is as full as it can be.
import { Container, PodSandbox } from "../gen/nri/api.js";
import { DEFAULT_MAX_MESSAGE_SIZE } from "../ttrpc/index.js";
import { ResourceExhaustedError } from "../util/errors.js";

export interface SyncPart {
  pods: PodSandbox[];
  containers: Container[];
}

/** Room left in a ttrpc message for the request's payload after its envelope (names, header). */
export const SYNC_PART_BYTES = DEFAULT_MAX_MESSAGE_SIZE - 64 * 1024;

/** Bytes an item takes in a repeated field: tag, length prefix (at most 5 bytes) and body. */
const itemBytes = (body: number) => 1 + 5 + body;

export function syncParts(pods: PodSandbox[], containers: Container[], maxBytes = SYNC_PART_BYTES): SyncPart[] {
  const parts: SyncPart[] = [];
  let cur: SyncPart = { pods: [], containers: [] };
  let size = 0;
  const add = (kind: "pods" | "containers", item: PodSandbox | Container, body: number) => {
    const n = itemBytes(body);
    if (n > maxBytes) {
      const id = item.id;
      throw new ResourceExhaustedError(
        `NRI Synchronize: ${kind === "pods" ? "pod" : "container"} ${id} alone is ${n} bytes, over one message's ${maxBytes}`,
      );
    }
    if (size + n > maxBytes) {
      parts.push(cur);
      cur = { pods: [], containers: [] };
      size = 0;
    }
    (cur[kind] as (PodSandbox | Container)[]).push(item);
    size += n;
  };
  for (const p of pods) add("pods", p, PodSandbox.encode(p).finish().length);
  for (const c of containers) add("containers", c, Container.encode(c).finish().length);
  parts.push(cur);
  return parts;
}
