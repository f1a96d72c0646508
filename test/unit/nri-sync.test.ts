// Synchronize in parts: a node's pods and containers are packed in order into messages that fit
// one ttrpc message, every part but the last flagged `more`; one that cannot fit alone is refused.
import assert from "node:assert/strict";
import { test } from "node:test";

import { Container, PodSandbox } from "../../src/gen/nri/api.js";
import { SYNC_PART_BYTES, syncParts } from "../../src/nri/sync-parts.js";
import { DEFAULT_MAX_MESSAGE_SIZE } from "../../src/ttrpc/index.js";
import { ResourceExhaustedError } from "../../src/util/errors.js";

const pod = (id: string, pad = 0) => PodSandbox.fromPartial({ id, annotations: pad ? { pad: "x".repeat(pad) } : {} });
const ctr = (id: string, pad = 0) =>
  Container.fromPartial({ id, podSandboxId: "p", args: pad ? ["x".repeat(pad)] : [] });

test("everything in one part when it fits", () => {
  const parts = syncParts([pod("a"), pod("b")], [ctr("c")]);
  assert.equal(parts.length, 1);
  assert.deepEqual(
    parts[0]!.pods.map((p) => p.id),
    ["a", "b"],
  );
  assert.deepEqual(
    parts[0]!.containers.map((c) => c.id),
    ["c"],
  );
  assert.deepEqual(syncParts([], []), [{ pods: [], containers: [] }]);
});

test("split in order into parts that each fit, nothing lost or repeated", () => {
  const pods = Array.from({ length: 7 }, (_, i) => pod(`p${i}`, 300));
  const ctrs = Array.from({ length: 9 }, (_, i) => ctr(`c${i}`, 300));
  const limit = 1000;
  const parts = syncParts(pods, ctrs, limit);
  assert.ok(parts.length > 1);
  for (const part of parts) {
    const bytes =
      part.pods.reduce((n, p) => n + 6 + PodSandbox.encode(p).finish().length, 0) +
      part.containers.reduce((n, c) => n + 6 + Container.encode(c).finish().length, 0);
    assert.ok(bytes <= limit, `part of ${bytes} bytes`);
  }
  assert.deepEqual(
    parts.flatMap((p) => p.pods.map((x) => x.id)),
    pods.map((p) => p.id),
  );
  assert.deepEqual(
    parts.flatMap((p) => p.containers.map((x) => x.id)),
    ctrs.map((c) => c.id),
  );
});

test("a part leaves room for the ttrpc envelope; an item too big for any message is refused by name", () => {
  assert.ok(SYNC_PART_BYTES < DEFAULT_MAX_MESSAGE_SIZE);
  assert.throws(
    () => syncParts([], [ctr("huge", 2000)], 1000),
    (e: unknown) => e instanceof ResourceExhaustedError && /huge/.test(String(e)),
  );
});
