// The image reads' memo (src/images/read-cache.ts): answers are kept while the image records'
// generation stays, dropped when it moves (also while an answer was being built), failures
// and absent images are not kept, and every caller gets its own copy of a record.
import assert from "node:assert/strict";
import { test } from "node:test";
import { ImageReadCache } from "../../../src/images/read-cache.js";
import type { ImageRecord } from "../../../src/images/service.js";
import { imageRecord } from "./records.js";

const rec = imageRecord;

test("resolutions are kept per generation; a throw is not kept", () => {
  let gen = 0;
  let computed = 0;
  const c = new ImageReadCache(() => gen);
  const resolve = (ref: string, to: string | undefined) =>
    c.resolve(ref, () => {
      computed++;
      return to;
    });
  assert.equal(resolve("busybox", "sha256:a"), "sha256:a");
  assert.equal(resolve("busybox", "sha256:zzz"), "sha256:a");
  assert.equal(resolve("nothing", undefined), undefined);
  assert.equal(resolve("nothing", "sha256:b"), undefined);
  assert.equal(computed, 2);
  gen++;
  assert.equal(resolve("busybox", "sha256:b"), "sha256:b");
  assert.equal(computed, 3);
  assert.throws(() => c.resolve("abcd", () => { throw new Error("ambiguous"); }), /ambiguous/); // prettier-ignore
  assert.equal(resolve("abcd", "sha256:c"), "sha256:c");
});

test("records are kept per generation, copied for each caller, absent ones not kept", async () => {
  let gen = 0;
  let builds = 0;
  const c = new ImageReadCache(() => gen);
  const build = (r: ImageRecord | undefined) => async () => (builds++, r);
  const first = await c.record("sha256:a", build(rec("sha256:a", ["busybox:1"])));
  first!.repoTags.push("mutated");
  const second = await c.record("sha256:a", build(rec("sha256:a", ["other"])));
  assert.deepEqual(second!.repoTags, ["busybox:1"]);
  assert.equal(builds, 1);
  assert.equal(await c.record("sha256:x", build(undefined)), undefined);
  assert.equal((await c.record("sha256:x", build(rec("sha256:x", ["x"]))))!.id, "sha256:x");
  gen++;
  assert.deepEqual((await c.record("sha256:a", build(rec("sha256:a", ["retagged"]))))!.repoTags, ["retagged"]);
});

test("a record built while the generation moved is answered but not kept", async () => {
  let gen = 0;
  const c = new ImageReadCache(() => gen);
  const r = await c.record("sha256:a", async () => {
    gen++; // e.g. a tag removed while the config was being read
    return rec("sha256:a", ["old"]);
  });
  assert.deepEqual(r!.repoTags, ["old"]);
  const again = await c.record("sha256:a", async () => rec("sha256:a", ["new"]));
  assert.deepEqual(again!.repoTags, ["new"]);
});

test("the list is kept per generation and copied", async () => {
  let gen = 0;
  let builds = 0;
  const c = new ImageReadCache(() => gen);
  const build = async () => (builds++, [rec("sha256:a", ["a"]), rec("sha256:b", ["b"])]);
  const l1 = await c.list(build);
  l1[0]!.repoTags.length = 0;
  assert.deepEqual(
    (await c.list(build)).map((r) => r.repoTags),
    [["a"], ["b"]],
  );
  assert.equal(builds, 1);
  gen++;
  await c.list(build);
  assert.equal(builds, 2);
});
