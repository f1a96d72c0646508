// image_pull_with_sync_fs (containerd's option of that name): each unpacked layer is synced to
// disk (syncfs of its filesystem) before its snapshot is committed, so a power cut soon after a
// pull cannot leave a committed layer with empty or cut-off files. A power cut cannot be caused
// here, so the test checks what an operator can see: with the option every layer the pull
// unpacks gets its syncfs, as a span of that PullImage's trace (`berth trace`), and the image is
// pulled as without it; by default there is none. Also sys.syncfs itself: it resolves for a
// directory and a file and rejects with a SysError for a path that does not exist.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as sys from "../../src/sys/index.js";
import { berth } from "../helpers/cli.js";
import { startDaemon, type TestDaemon } from "../helpers/daemon.js";
import { buildImage, makeLayer, pushLayout, writeOciLayout } from "../helpers/images.js";
import { startRegistry, type TestRegistry } from "../helpers/registry.js";

let reg: TestRegistry;
let work: string;
const daemons: TestDaemon[] = [];
let image: { digest: string; ref: string };

before(async () => {
  work = await mkdtemp(join(tmpdir(), "berth-sync-fs-"));
  reg = await startRegistry();
  const layers = [
    await makeLayer([{ name: "a.txt", content: "first layer\n" }]),
    await makeLayer([{ name: "b.txt", content: "second layer\n".repeat(1000) }]),
  ];
  const img = buildImage(layers);
  const layout = join(work, "layout");
  await writeOciLayout(layout, [{ tag: "two", image: img }]);
  await pushLayout(layout, "two", `${reg.host}/test/two:1`);
  image = { digest: img.config.digest, ref: `${reg.host}/test/two:1` };
});

after(async () => {
  for (const d of daemons) await d.stop();
  await reg?.stop();
  await rm(work, { recursive: true, force: true });
});

async function daemon(config = ""): Promise<TestDaemon> {
  const d = await startDaemon({ config });
  daemons.push(d);
  return d;
}

/** The span names of the last PullImage's trace. */
async function pullSpans(d: TestDaemon): Promise<string[]> {
  const r = await berth(["trace", "-f", "PullImage", "-n", "1", "-o", "json"], { env: { BERTH_ADDRESS: d.socket } });
  assert.equal(r.code, 0, r.stderr);
  const [t] = JSON.parse(r.stdout) as { spans: { name: string }[] }[];
  assert.ok(t, "a PullImage trace");
  return t.spans.map((s) => s.name);
}

test("with image_pull_with_sync_fs each layer the pull unpacks is synced before it is committed", async () => {
  const d = await daemon("[image]\nimage_pull_with_sync_fs = true\n");
  const r = await d.img.pullImage({ image: { image: image.ref } });
  assert.equal(r.imageRef, image.digest);
  const spans = await pullSpans(d);
  assert.equal(spans.filter((n) => n === "images.syncfs").length, 2, `one syncfs per layer: ${spans.join(", ")}`);
  assert.equal((await d.img.imageStatus({ image: { image: image.ref } })).image?.id, image.digest);
  // A second pull of it unpacks nothing, so it syncs nothing.
  await d.img.pullImage({ image: { image: image.ref } });
  assert.deepEqual(
    (await pullSpans(d)).filter((n) => n === "images.syncfs"),
    [],
  );
});

test("by default a pull syncs nothing", async () => {
  const d = await daemon();
  await d.img.pullImage({ image: { image: image.ref } });
  assert.deepEqual(
    (await pullSpans(d)).filter((n) => n === "images.syncfs"),
    [],
  );
});

test("sys.syncfs resolves for a directory and a file, and rejects with a SysError for a missing path", async () => {
  const f = join(work, "f");
  await writeFile(f, "data");
  assert.equal(await sys.syncfs(work), undefined);
  assert.equal(await sys.syncfs(f), undefined);
  const missing = join(work, "missing");
  await assert.rejects(sys.syncfs(missing), (err: unknown) => {
    assert.ok(err instanceof sys.SysError);
    assert.equal(err.code, "ENOENT");
    assert.equal(err.syscall, "syncfs");
    assert.equal(err.path, missing);
    return true;
  });
});
