// A big, compressible multi-layer image pushed to a registry, and the `gzip -d` floor of
// decompressing its layer blobs: shared by pull.bench.ts and run.ts.
import { spawnSync } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildImage, makeLayer, pushLayout, writeOciLayout, type EntrySpec } from "../../test/helpers/images.js";

const FILES_PER_LAYER = 20;

/** Text-like data: random words from a small vocabulary, compresses about 3-4x like real files. */
export function compressible(bytes: number, seed: number): Buffer {
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

export interface BigImage {
  /** registry reference, e.g. 127.0.0.1:5000/bench/big:1 */
  ref: string;
  /** the gzip layer blobs, as files (for the floor) */
  files: string[];
  uncompressedBytes: number;
  compressedBytes: number;
  cleanup(): Promise<void>;
}

/** Builds `layers` gzip layers of `layerMiB` each and pushes them as `<host>/bench/big:<tag>`. */
export async function pushBigImage(host: string, layers: number, layerMiB: number, tag = "1"): Promise<BigImage> {
  const work = await mkdtemp(join(tmpdir(), "berth-bench-pull-"));
  try {
    const built = [];
    let uncompressed = 0;
    for (let l = 0; l < layers; l++) {
      const entries: EntrySpec[] = [{ name: `layer${l}/`, type: "directory" }];
      for (let f = 0; f < FILES_PER_LAYER; f++) {
        const data = compressible(Math.floor((layerMiB * (1 << 20)) / FILES_PER_LAYER), l * 1000 + f + 1);
        uncompressed += data.length;
        entries.push({ name: `layer${l}/file${f}.txt`, content: data });
      }
      built.push(await makeLayer(entries, "gzip"));
    }
    const compressed = built.reduce((n, l) => n + l.size, 0);
    const layout = join(work, "layout");
    const ref = `${host}/bench/big:${tag}`;
    await writeOciLayout(layout, [{ tag: "bench", image: buildImage(built) }]);
    await pushLayout(layout, "bench", ref);
    await rm(layout, { recursive: true, force: true });
    const files: string[] = [];
    for (const [i, l] of built.entries()) {
      const p = join(work, `layer${i}.gz`);
      await writeFile(p, l.blob);
      files.push(p);
    }
    return {
      ref,
      files,
      uncompressedBytes: uncompressed,
      compressedBytes: compressed,
      cleanup: () => rm(work, { recursive: true, force: true }),
    };
  } catch (err) {
    await rm(work, { recursive: true, force: true });
    throw err;
  }
}

/** Seconds to decompress the blobs one after the other to /dev/null with gzip -d. */
export function gzipFloorSeconds(files: string[]): number {
  const t = process.hrtime.bigint();
  for (const f of files) {
    const r = spawnSync("sh", ["-c", `gzip -d -c '${f}' > /dev/null`]);
    if (r.status !== 0) throw new Error(`gzip failed: ${r.stderr}`);
  }
  return Number(process.hrtime.bigint() - t) / 1e9;
}
