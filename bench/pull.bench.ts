// Pull throughput: a ~200 MB, 4-layer image pushed to a local docker-registry, pulled and
// unpacked by berth (overlayfs snapshotter by default, BENCH_SNAPSHOTTER=native for the copy
// one), against the floor of `gzip -d` of the same layer blobs to /dev/null.
// Run: npx tsc -p tsconfig.json && node dist/bench/pull.bench.js
import { spawnSync } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openDatabase } from "../src/metadata/db.js";
import { ImageService } from "../src/images/service.js";
import { startRegistry } from "../test/helpers/registry.js";
import { buildImage, makeLayer, pushLayout, writeOciLayout, type EntrySpec } from "../test/helpers/images.js";

const LAYERS = Number(process.env.BENCH_LAYERS ?? 4);
const LAYER_MB = Number(process.env.BENCH_LAYER_MB ?? 50);
const FILES_PER_LAYER = 20;

/** Text-like data: random words from a small vocabulary, compresses about 3-4x like real files. */
function compressible(bytes: number, seed: number): Buffer {
  const words = Array.from({ length: 512 }, (_, i) =>
    ((i * 2654435761 + seed) >>> 0).toString(36).slice(0, 3 + (i % 7)),
  );
  const buf = Buffer.allocUnsafe(bytes);
  let x = seed >>> 0 || 1;
  let pos = 0;
  while (pos < bytes) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    const w = words[x & 511];
    pos += buf.write(w + ((x >>> 9) % 11 === 0 ? "\n" : " "), pos);
  }
  return buf;
}

async function main(): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), "berth-bench-"));
  const reg = await startRegistry();
  try {
    const layers = [];
    let uncompressed = 0;
    for (let l = 0; l < LAYERS; l++) {
      const entries: EntrySpec[] = [{ name: `layer${l}/`, type: "directory" }];
      for (let f = 0; f < FILES_PER_LAYER; f++) {
        const data = compressible(Math.floor((LAYER_MB << 20) / FILES_PER_LAYER), l * 1000 + f + 1);
        uncompressed += data.length;
        entries.push({ name: `layer${l}/file${f}.txt`, content: data });
      }
      layers.push(await makeLayer(entries, "gzip"));
    }
    const compressed = layers.reduce((n, l) => n + l.size, 0);
    const layout = join(work, "layout");
    await writeOciLayout(layout, [{ tag: "bench", image: buildImage(layers) }]);
    await pushLayout(layout, "bench", `${reg.host}/bench/big:1`);
    const files: string[] = [];
    for (const [i, l] of layers.entries()) {
      const p = join(work, `layer${i}.gz`);
      await writeFile(p, l.blob);
      files.push(p);
    }
    layers.length = 0;

    // Floor: decompressing the same blobs, one after the other, to /dev/null.
    let t = process.hrtime.bigint();
    for (const f of files) {
      const r = spawnSync("sh", ["-c", `gzip -d -c '${f}' > /dev/null`]);
      if (r.status !== 0) throw new Error(`gzip failed: ${r.stderr}`);
    }
    const floorS = Number(process.hrtime.bigint() - t) / 1e9;

    const snapshotter = process.env.BENCH_SNAPSHOTTER ?? "overlayfs";
    const root = join(work, "state");
    const db = openDatabase(join(root, "meta.db"));
    const svc = await ImageService.create({ root, db, snapshotter, registry: { configPath: undefined } });
    t = process.hrtime.bigint();
    await svc.pull(`${reg.host}/bench/big:1`);
    const pullS = Number(process.hrtime.bigint() - t) / 1e9;
    db.close();

    const mb = (b: number) => b / (1 << 20);
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
    await reg.stop();
    await rm(work, { recursive: true, force: true });
  }
}

await main();
