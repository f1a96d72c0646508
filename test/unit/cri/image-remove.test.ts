// RemoveImage and the collection after it (src/cri/image-service.ts): the removal waits for the
// collection when it can start at once (as containerd's synchronous delete), and leaves it in
// the background while a pull holds the GC lock, so a removal never waits behind a long pull.
// The real image service's side is in test/e2e/cri-images.test.ts.
import assert from "node:assert/strict";
import { test } from "node:test";
import { imageServiceHandlers, type CriImages } from "../../../src/cri/image-service.js";
import { ImageSpec } from "../../../src/gen/cri/runtime/v1/api.js";
import type { GcResult } from "../../../src/images/service.js";

function fakeImages(gcFree: boolean) {
  let finish!: (r: GcResult) => void;
  const collection = new Promise<GcResult>((r) => (finish = r));
  let requests = 0;
  const images = {
    gcFree,
    remove: async () => ({ imageId: "sha256:1", imageRemoved: true }),
    requestGc: () => {
      requests++;
      return collection;
    },
  } as unknown as CriImages;
  return { images, finish, requests: () => requests };
}

const done = (): GcResult => ({ removedBlobs: ["sha256:1"], removedSnapshots: [], removedIngests: [] });

test("no pull holds the lock: RemoveImage returns once the collection is done", async () => {
  const f = fakeImages(true);
  const h = imageServiceHandlers({ images: f.images });
  let returned = false;
  const call = h.removeImage!({ image: ImageSpec.fromPartial({ image: "x:1" }) }, {} as never).then(
    () => (returned = true),
  );
  await new Promise((r) => setImmediate(r));
  assert.equal(f.requests(), 1);
  assert.equal(returned, false, "still collecting");
  f.finish(done());
  await call;
  assert.equal(returned, true);
});

test("a pull holds the lock: RemoveImage returns at once, the collection runs in the background", async () => {
  const f = fakeImages(false);
  const h = imageServiceHandlers({ images: f.images });
  await h.removeImage!({ image: ImageSpec.fromPartial({ image: "x:1" }) }, {} as never);
  assert.equal(f.requests(), 1, "the collection was requested");
  f.finish(done());
});
