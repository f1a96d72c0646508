// Pull throughput: a ~200 MB, 4-layer image pushed to a local docker-registry, pulled and
// unpacked by berth (overlayfs snapshotter by default, BENCH_SNAPSHOTTER=native for the copy
// one), against the floor of `gzip -d` of the same layer blobs to /dev/null.
// Run: npx tsc -p tsconfig.json && node dist/bench/pull.bench.js
// (`npm run bench` measures the same through berthd's CRI PullImage, with bench/lib/pull.ts.)
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openDatabase } from "../src/metadata/db.js";
import { ImageService } from "../src/images/service.js";
import { startRegistry } from "../test/helpers/registry.js";
import { gzipFloorSeconds, pushBigImage } from "./lib/pull.js";

const LAYERS = Number(process.env.BENCH_LAYERS ?? 4);
const LAYER_MB = Number(process.env.BENCH_LAYER_MB ?? 50);

async function main(): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), "berth-bench-"));
  const reg = await startRegistry();
  const img = await pushBigImage(reg.host, LAYERS, LAYER_MB);
  try {
    // Floor: decompressing the same blobs, one after the other, to /dev/null.
    const floorS = gzipFloorSeconds(img.files);

    const snapshotter = process.env.BENCH_SNAPSHOTTER ?? "overlayfs";
    const root = join(work, "state");
    const db = openDatabase(join(root, "meta.db"));
    const svc = await ImageService.create({ root, db, snapshotter, registry: { configPath: undefined } });
    const t = process.hrtime.bigint();
    await svc.pull(img.ref);
    const pullS = Number(process.hrtime.bigint() - t) / 1e9;
    db.close();

    const mb = (b: number) => b / (1 << 20);
    const uncompressed = img.uncompressedBytes;
    const compressed = img.compressedBytes;
    console.log(
      `image: ${LAYERS} layers, ${mb(uncompressed).toFixed(0)} MiB uncompressed, ${mb(compressed).toFixed(0)} MiB gzip`,
    );
    console.log(
      `gzip -d floor:       ${floorS.toFixed(2)} s  ${(mb(uncompressed) / floorS).toFixed(0)} MiB/s uncompressed`,
    );
    console.log(
      `berth pull+unpack (${snapshotter}): ${pullS.toFixed(2)} s  ${(mb(uncompressed) / pullS).toFixed(0)} MiB/s uncompressed, ${(mb(compressed) / pullS).toFixed(0)} MiB/s transferred`,
    );
    console.log(`ratio pull/floor: ${(pullS / floorS).toFixed(2)}x`);
  } finally {
    await img.cleanup();
    await reg.stop();
    await rm(work, { recursive: true, force: true });
  }
}

await main();
