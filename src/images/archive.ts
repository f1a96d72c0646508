// Offline images: import of OCI image layout archives and `docker save` archives, import
// of a plain rootfs tarball as a one-layer image (like `docker import`), and export as an
// OCI layout archive that also carries Docker's manifest.json (so `docker load` takes it).
//
// An archive is unpacked into a scratch directory with the same confined extractor as
// layers (nothing lands outside it), then every blob goes through the content store's
// verified ingest, so an archive can no more smuggle bad content than a registry can.
import { createHash, randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { lstat, mkdir, open, readFile, realpath, rm } from "node:fs/promises";
import { join, sep } from "node:path";
import type { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createWriteStream } from "node:fs";
import tar from "tar-stream";
import { InvalidArgumentError, NotFoundError } from "../util/errors.js";
import {
  MediaType,
  isIndex,
  type Descriptor,
  type ImageConfigJson,
  type ImageRuntimeConfig,
  type IndexJson,
  type ManifestJson,
  type Platform,
} from "./mediatypes.js";
import { formatPlatform, hostPlatform, selectManifest } from "./platform.js";
import { digestName, formatReference, parseReference, tagName } from "./reference.js";
import { parseManifest } from "./manifest.js";
import type { ImageRecord, ImageService } from "./service.js";
import { applyLayer, compressionOf, diffIdOf } from "./unpack.js";

export interface ImportOptions {
  /** repository for entries that carry only a tag (OCI ref.name "1.0"); default "import" */
  baseName?: string;
  platform?: Platform;
  labels?: Record<string, string>;
}

async function scratch(svc: ImageService): Promise<string> {
  const dir = join(svc.content.root, "..", "tmp", `import-${randomBytes(6).toString("hex")}`);
  await mkdir(dir, { recursive: true });
  return dir;
}

/** A path inside `dir` named by the archive, refusing symlinks that lead out of it. */
async function inside(dir: string, rel: string): Promise<string> {
  const p = join(dir, rel);
  let real: string;
  try {
    real = await realpath(p);
  } catch {
    throw new InvalidArgumentError(`archive: ${rel} is missing`);
  }
  const base = await realpath(dir);
  if (!real.startsWith(base + sep)) throw new InvalidArgumentError(`archive: ${rel} points outside the archive`);
  return real;
}

async function fileDigest(path: string): Promise<{ digest: string; size: number }> {
  const h = createHash("sha256");
  let size = 0;
  for await (const c of createReadStream(path)) {
    h.update(c as Buffer);
    size += (c as Buffer).length;
  }
  return { digest: `sha256:${h.digest("hex")}`, size };
}

async function ingestFile(
  svc: ImageService,
  path: string,
  expected?: Descriptor,
): Promise<{ digest: string; size: number }> {
  const d = expected ? { digest: expected.digest, size: expected.size } : await fileDigest(path);
  await svc.content.ingest(d, async (offset) => ({ offset, stream: createReadStream(path, { start: offset }) }));
  return d;
}

async function head(path: string): Promise<Buffer> {
  const fh = await open(path, "r");
  try {
    const b = Buffer.alloc(8);
    const { bytesRead } = await fh.read(b, 0, 8, 0);
    return b.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

function nameFor(annotation: string | undefined, opts: ImportOptions): string | undefined {
  if (!annotation) return undefined;
  if (annotation.includes("/") || annotation.includes("@")) return formatReference(parseReference(annotation));
  return tagName(parseReference(`${opts.baseName ?? "import"}:${annotation}`));
}

/** Imports an OCI layout archive or a `docker save` archive; returns the images it named. */
export async function importArchive(
  svc: ImageService,
  input: Readable,
  opts: ImportOptions = {},
): Promise<ImageRecord[]> {
  const dir = await scratch(svc);
  try {
    await applyLayer(input, dir, { whiteouts: "native" });
    const hasIndex = await lstat(join(dir, "index.json")).then(
      () => true,
      () => false,
    );
    const hasManifest = await lstat(join(dir, "manifest.json")).then(
      () => true,
      () => false,
    );
    if (hasIndex) {
      const index = JSON.parse(await readFile(await inside(dir, "index.json"), "utf8")) as IndexJson;
      if ((index.manifests ?? []).length > 0) return await importOciLayout(svc, dir, index, opts);
    }
    if (hasManifest) return await importDockerArchive(svc, dir, opts);
    throw new InvalidArgumentError("archive has neither an OCI index.json nor a docker manifest.json");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function importOciLayout(
  svc: ImageService,
  dir: string,
  index: IndexJson,
  opts: ImportOptions,
): Promise<ImageRecord[]> {
  const blob = (d: Descriptor) => inside(dir, join("blobs", "sha256", d.digest.replace(/^sha256:/, "")));
  const out: ImageRecord[] = [];
  for (const entry of index.manifests) {
    const name = nameFor(
      entry.annotations?.["io.containerd.image.name"] ?? entry.annotations?.["org.opencontainers.image.ref.name"],
      opts,
    );
    const blobs: string[] = [];
    await ingestFile(svc, await blob(entry), entry);
    blobs.push(entry.digest);
    let manifestDesc: Descriptor = entry;
    if (isIndex(entry.mediaType)) {
      const idx = await svc.content.readJson<IndexJson>(entry.digest);
      const want = opts.platform ?? hostPlatform();
      const chosen = selectManifest(idx.manifests ?? [], want);
      if (!chosen)
        throw new NotFoundError(`archive entry ${name ?? entry.digest} has no image for ${formatPlatform(want)}`);
      await ingestFile(svc, await blob(chosen), chosen);
      manifestDesc = chosen;
      blobs.push(chosen.digest);
    }
    const manifest = parseManifest(await svc.content.read(manifestDesc.digest), name ?? manifestDesc.digest);
    await ingestFile(svc, await blob(manifest.config), manifest.config);
    for (const l of manifest.layers) await ingestFile(svc, await blob(l), l);
    const names = name ? [name] : [];
    if (name) names.push(digestName(parseReference(name), entry.digest));
    out.push(await svc.storeImage({ target: entry, manifestDesc, manifest, names, blobs, labels: opts.labels ?? {} }));
  }
  return out;
}

interface DockerArchiveEntry {
  Config: string;
  RepoTags?: string[] | null;
  Layers: string[];
}

async function importDockerArchive(svc: ImageService, dir: string, opts: ImportOptions): Promise<ImageRecord[]> {
  const entries = JSON.parse(await readFile(await inside(dir, "manifest.json"), "utf8")) as DockerArchiveEntry[];
  const out: ImageRecord[] = [];
  for (const e of entries) {
    const configBody = await readFile(await inside(dir, e.Config));
    const configDigest = await svc.content.writeBuffer(configBody);
    const layers: Descriptor[] = [];
    for (const l of e.Layers) {
      const p = await inside(dir, l);
      const d = await ingestFile(svc, p);
      const c = compressionOf(await head(p));
      layers.push({
        mediaType: c === "gzip" ? MediaType.ociLayerGzip : c === "zstd" ? MediaType.ociLayerZstd : MediaType.ociLayer,
        ...d,
      });
    }
    const manifest: ManifestJson = {
      schemaVersion: 2,
      mediaType: MediaType.ociManifest,
      config: { mediaType: MediaType.ociConfig, digest: configDigest, size: configBody.length },
      layers,
    };
    const body = Buffer.from(JSON.stringify(manifest));
    const manifestDesc: Descriptor = {
      mediaType: MediaType.ociManifest,
      digest: await svc.content.writeBuffer(body),
      size: body.length,
    };
    const names: string[] = [];
    for (const t of e.RepoTags ?? []) {
      const ref = parseReference(t);
      names.push(tagName(ref)!, digestName(ref, manifestDesc.digest));
    }
    out.push(
      await svc.storeImage({
        target: manifestDesc,
        manifestDesc,
        manifest,
        names,
        blobs: [manifestDesc.digest],
        labels: opts.labels ?? {},
      }),
    );
  }
  return out;
}

/** Imports a plain rootfs tarball (tar, tar.gz or tar.zst) as a one-layer image named `ref`. */
export async function importRootfs(
  svc: ImageService,
  input: Readable,
  ref: string,
  opts: { config?: ImageRuntimeConfig; platform?: Platform; labels?: Record<string, string> } = {},
): Promise<ImageRecord> {
  const parsed = parseReference(ref);
  const dir = await scratch(svc);
  try {
    const file = join(dir, "layer");
    await pipeline(input, createWriteStream(file));
    const layerDesc = await ingestFile(svc, file);
    const { diffId } = await diffIdOf(createReadStream(file));
    const c = compressionOf(await head(file));
    const platform = opts.platform ?? hostPlatform();
    const created = new Date().toISOString();
    const config: ImageConfigJson = {
      created,
      architecture: platform.architecture,
      os: platform.os,
      ...(platform.variant ? { variant: platform.variant } : {}),
      config: opts.config ?? {},
      rootfs: { type: "layers", diff_ids: [diffId] },
      history: [{ created, created_by: "berth import", comment: "imported from a rootfs tarball" }],
    };
    const configBody = Buffer.from(JSON.stringify(config));
    const configDigest = await svc.content.writeBuffer(configBody);
    const manifest: ManifestJson = {
      schemaVersion: 2,
      mediaType: MediaType.ociManifest,
      config: { mediaType: MediaType.ociConfig, digest: configDigest, size: configBody.length },
      layers: [
        {
          mediaType: c === "gzip" ? MediaType.ociLayerGzip : c === "zstd" ? MediaType.ociLayerZstd : MediaType.ociLayer,
          ...layerDesc,
        },
      ],
    };
    const body = Buffer.from(JSON.stringify(manifest));
    const manifestDesc: Descriptor = {
      mediaType: MediaType.ociManifest,
      digest: await svc.content.writeBuffer(body),
      size: body.length,
    };
    const names = [parsed.digest ? undefined : tagName(parsed), digestName(parsed, manifestDesc.digest)].filter(
      (n): n is string => !!n,
    );
    return await svc.storeImage({
      target: manifestDesc,
      manifestDesc,
      manifest,
      names,
      blobs: [],
      labels: opts.labels ?? {},
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Writes images as an OCI image layout tar to `out`, each manifest annotated with its
 * name(s), plus Docker's manifest.json listing config and layers for `docker load`.
 */
export async function exportArchive(svc: ImageService, refs: string[], out: Writable): Promise<void> {
  const pack = tar.pack();
  const done = pipeline(pack, out);
  const add = (name: string, body: Buffer) =>
    new Promise<void>((resolve, reject) =>
      pack.entry({ name, size: body.length, mode: 0o644 }, body, (e) => (e ? reject(e) : resolve())),
    );
  const written = new Set<string>();
  const addBlob = async (d: { digest: string }) => {
    if (written.has(d.digest)) return;
    written.add(d.digest);
    const size = (await svc.content.size(d.digest)) ?? 0;
    await new Promise<void>((resolve, reject) => {
      const sink = pack.entry({ name: `blobs/sha256/${d.digest.slice(7)}`, size, mode: 0o644 }, (e) =>
        e ? reject(e) : resolve(),
      );
      svc.content
        .openRead(d.digest)
        .on("error", reject)
        .pipe(sink as unknown as Writable);
    });
  };
  try {
    await add("oci-layout", Buffer.from(JSON.stringify({ imageLayoutVersion: "1.0.0" })));
    const manifests: Descriptor[] = [];
    const dockerManifest: DockerArchiveEntry[] = [];
    for (const ref of refs) {
      const img = await svc.status(ref);
      if (!img) throw new NotFoundError(`image ${ref} not found`);
      const row = svc.images.get(img.id)!;
      const manifestBody = await svc.content.read(row.manifestDigest);
      const manifest = JSON.parse(manifestBody.toString("utf8")) as ManifestJson;
      await addBlob({ digest: row.manifestDigest });
      await addBlob(manifest.config);
      for (const l of manifest.layers) await addBlob(l);
      const requested = (() => {
        try {
          return tagName(parseReference(ref));
        } catch {
          return undefined;
        }
      })();
      const tags = img.repoTags.includes(requested ?? "") ? [requested!] : img.repoTags;
      const desc = { mediaType: row.manifestMediaType, digest: row.manifestDigest, size: manifestBody.length };
      if (tags.length === 0) manifests.push(desc);
      for (const t of tags) {
        manifests.push({
          ...desc,
          annotations: {
            "io.containerd.image.name": t,
            "org.opencontainers.image.ref.name": t.slice(t.lastIndexOf(":") + 1),
          },
        });
      }
      dockerManifest.push({
        Config: `blobs/sha256/${manifest.config.digest.slice(7)}`,
        RepoTags: tags,
        Layers: manifest.layers.map((l) => `blobs/sha256/${l.digest.slice(7)}`),
      });
    }
    await add(
      "index.json",
      Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociIndex, manifests })),
    );
    await add("manifest.json", Buffer.from(JSON.stringify(dockerManifest)));
    pack.finalize();
  } catch (err) {
    pack.destroy(err as Error);
    await done.catch(() => {});
    throw err;
  }
  await done;
}
