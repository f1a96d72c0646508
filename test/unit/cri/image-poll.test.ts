// ImageStatus and ListImages polls (src/cri/image-service.ts): while no image record changed
// they answer the kept messages without reading a record; a change of the records (a new tag,
// a pull, a removal) is answered from the records again, and a verbose status or a filtered
// list always reads them. The real image service's side is in test/e2e/cri-state-cache.test.ts.
import assert from "node:assert/strict";
import { test } from "node:test";
import { imageServiceHandlers, type CriImages } from "../../../src/cri/image-service.js";
import { ImageFilter, ImageSpec } from "../../../src/gen/cri/runtime/v1/api.js";
import { imageRecord } from "../images/records.js";

const record = imageRecord;

function fakeImages() {
  const f = {
    generation: 1,
    records: [record("sha256:a", ["x:1"]), record("sha256:b", ["y:1"])],
    reads: 0,
  };
  const byRef = (ref: string) => f.records.find((r) => r.id === ref || r.repoTags.includes(ref));
  const images = {
    get generation() {
      return f.generation;
    },
    resolveId: (ref: string) => byRef(ref)?.id,
    status: async (ref: string) => {
      f.reads++;
      return byRef(ref);
    },
    list: async (filter: { ref?: string } = {}) => {
      f.reads++;
      return filter.ref ? f.records.filter((r) => r === byRef(filter.ref!)) : [...f.records];
    },
    imageConfig: async () => ({}),
  } as unknown as CriImages;
  return { f, images };
}

const spec = (image: string) => ImageSpec.fromPartial({ image });

test("ImageStatus: the same kept message without a record read until the records change", async () => {
  const { f, images } = fakeImages();
  const h = imageServiceHandlers({ images });
  const first = await h.imageStatus!({ image: spec("x:1"), verbose: false }, {} as never);
  assert.equal(f.reads, 1);
  const again = await h.imageStatus!({ image: spec("sha256:a"), verbose: false }, {} as never);
  assert.equal(again.image, first.image, "the kept message");
  assert.equal(f.reads, 1, "no record read");
  // a new tag: generation moves on, the record is read again and the answer shows it
  f.records[0] = record("sha256:a", ["x:1", "x:2"]);
  f.generation++;
  const tagged = await h.imageStatus!({ image: spec("x:1"), verbose: false }, {} as never);
  assert.equal(f.reads, 2);
  assert.deepEqual(tagged.image?.repoTags, ["x:1", "x:2"]);
  assert.notEqual(tagged.image, first.image);
  // verbose always reads, and carries info
  const verbose = await h.imageStatus!({ image: spec("x:1"), verbose: true }, {} as never);
  assert.equal(f.reads, 3);
  assert.ok(verbose.info.info);
  // an image never seen, and one that is gone: the empty answer kubelet pulls on
  assert.equal((await h.imageStatus!({ image: spec("z:1"), verbose: false }, {} as never)).image, undefined);
  f.records.splice(0, 1);
  f.generation++;
  assert.equal((await h.imageStatus!({ image: spec("x:1"), verbose: false }, {} as never)).image, undefined);
});

test("ListImages: the kept list without a record read until the records change; a filter always reads", async () => {
  const { f, images } = fakeImages();
  const h = imageServiceHandlers({ images });
  const first = await h.listImages!({ filter: undefined }, {} as never);
  assert.deepEqual(
    first.images.map((i) => i.id),
    ["sha256:a", "sha256:b"],
  );
  const reads = f.reads;
  const again = await h.listImages!({ filter: undefined }, {} as never);
  assert.equal(again.images, first.images);
  assert.equal(f.reads, reads);
  const filtered = await h.listImages!({ filter: ImageFilter.fromPartial({ image: spec("y:1") }) }, {} as never);
  assert.deepEqual(
    filtered.images.map((i) => i.id),
    ["sha256:b"],
  );
  assert.equal(f.reads, reads + 1);
  f.records.push(record("sha256:c", ["z:1"]));
  f.generation++;
  const grown = await h.listImages!({ filter: undefined }, {} as never);
  assert.deepEqual(
    grown.images.map((i) => i.id),
    ["sha256:a", "sha256:b", "sha256:c"],
  );
  assert.notEqual(grown.images[0], first.images[0], "after a change every message is made anew");
});
