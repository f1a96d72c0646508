// The image service's two wrappers in berthd (src/observability/index.ts, put together in
// daemon/compose.ts): the pull counter inside, the tracing proxy outside. A status read reaches
// the image service through both on every call: each hands out one bound function per method,
// not a new one per access, and the methods still run on the service itself.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Observability } from "../../../src/observability/index.js";

class FakeImages {
  private readonly ids = new Map([["x:1", "sha256:a"]]);
  generation = 3;
  resolveId(ref: string): string | undefined {
    return this.ids.get(ref);
  }
  async status(ref: string): Promise<string | undefined> {
    return this.resolveId(ref);
  }
  async pull(ref: string): Promise<string> {
    return `pulled ${ref}`;
  }
}

test("countingPulls inside traced: one function per method across accesses, bound to the service", async () => {
  const obs = new Observability({ traceBufferSize: 4 });
  const counted = obs.countingPulls(new FakeImages());
  assert.equal(counted.resolveId, counted.resolveId);
  const images = obs.traced(counted, "images", ["pull"]);
  const first = images.resolveId;
  assert.equal(images.resolveId, first, "the same function on every access");
  assert.equal(images.status, images.status);
  assert.equal(first("x:1"), "sha256:a", "bound to the service (its private map)");
  assert.equal(await images.status("x:1"), "sha256:a");
  assert.equal(images.generation, 3);
  assert.equal(await images.pull("y:1"), "pulled y:1");
});
