// What the image reads kubelet polls (ImageStatus, ListImages, the image_ref of every
// ContainerStatus) derive from the image records, kept until those records change. An image
// record (names, digests, size, its config) only changes through ImageMetadata, which bumps
// its generation on every write; everything here belongs to one generation and is dropped as
// a whole when it moves on, so a read never answers from records that are no longer there.
import type { ImageNameRow, ImageRow } from "../metadata/images.js";
import { repoOf } from "./manifest.js";
import type { ImageConfigJson } from "./mediatypes.js";
import type { ImageRecord } from "./service.js";

/** An image's record as the service answers it: its row, the names pointing at it and its config. */
export function imageRecord(row: ImageRow, names: ImageNameRow[], config: ImageConfigJson): ImageRecord {
  return {
    id: row.id,
    repoTags: names.filter((n) => !n.name.includes("@")).map((n) => n.name),
    repoDigests: [...new Set(names.map((n) => `${repoOf(n.name)}@${n.targetDigest}`))],
    size: row.size,
    manifestDigest: row.manifestDigest,
    chainId: row.chainId,
    snapshotter: row.snapshotter,
    labels: row.labels,
    createdAt: row.createdAt,
    os: config.os,
    architecture: config.architecture,
    variant: config.variant,
    config: config.config ?? {},
  };
}

/**
 * A caller's own copy of a remembered record: its lists and labels are fresh, so a caller
 * that changes them changes nothing here. The image config is shared, as it always was (the
 * service keeps one parsed config per image).
 */
export function copyRecord(r: ImageRecord): ImageRecord {
  return { ...r, repoTags: [...r.repoTags], repoDigests: [...r.repoDigests], labels: { ...r.labels } };
}

type R = ImageRecord;

/** The per-generation memo of resolved references and image records. */
export class ImageReadCache {
  private generation = -1;
  private records = new Map<string, R>();
  private resolved = new Map<string, string | undefined>();
  private all: R[] | undefined;

  /** Bounds the references remembered per generation (clients may ask for any string). */
  static readonly MAX_RESOLVED = 1024;

  constructor(private readonly currentGeneration: () => number) {}

  /** The memo of the current generation, emptied first if the records changed. */
  private sync(): number {
    const g = this.currentGeneration();
    if (g !== this.generation) {
      this.generation = g;
      this.records = new Map();
      this.resolved = new Map();
      this.all = undefined;
    }
    return g;
  }

  /** What `ref` resolved to, or `compute()`'s answer (remembered; a throw is not). */
  resolve(ref: string, compute: () => string | undefined): string | undefined {
    this.sync();
    if (this.resolved.has(ref)) return this.resolved.get(ref);
    const id = compute();
    if (this.resolved.size >= ImageReadCache.MAX_RESOLVED) this.resolved.clear();
    this.resolved.set(ref, id);
    return id;
  }

  /** A copy of the record of `id`: remembered, or built by `build()` (undefined: no such image, not remembered). */
  async record(id: string, build: () => Promise<R | undefined>): Promise<R | undefined> {
    const g = this.sync();
    const hit = this.records.get(id);
    if (hit) return copyRecord(hit);
    const r = await build();
    if (r === undefined) return undefined;
    // Kept only if nothing changed while it was built.
    if (this.currentGeneration() === g && this.generation === g) this.records.set(id, r);
    return copyRecord(r);
  }

  /** Copies of every record, as record() for the whole list. */
  async list(build: () => Promise<R[]>): Promise<R[]> {
    const g = this.sync();
    if (this.all) return this.all.map(copyRecord);
    const rs = await build();
    if (this.currentGeneration() === g && this.generation === g) this.all = rs;
    return rs.map(copyRecord);
  }
}
