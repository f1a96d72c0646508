// Image records: images keyed by config digest, the names (tags and digest references)
// pointing at them, and the blobs each one needs. Every mutation is one transaction.
import { statements, type Db, type Statement } from "./db.js";

export interface ImageRow {
  id: string;
  manifestDigest: string;
  manifestMediaType: string;
  chainId: string;
  snapshotter: string;
  size: number;
  labels: Record<string, string>;
  createdAt: number;
}

export interface ImageNameRow {
  name: string;
  imageId: string;
  targetDigest: string;
  targetMediaType: string;
  createdAt: number;
}

interface RawImage {
  id: string;
  manifest_digest: string;
  manifest_media_type: string;
  chain_id: string;
  snapshotter: string;
  size: number;
  labels: string;
  created_at: number;
}
interface RawName {
  name: string;
  image_id: string;
  target_digest: string;
  target_media_type: string;
  created_at: number;
}

function toImage(r: RawImage): ImageRow {
  return {
    id: r.id,
    manifestDigest: r.manifest_digest,
    manifestMediaType: r.manifest_media_type,
    chainId: r.chain_id,
    snapshotter: r.snapshotter,
    size: r.size,
    labels: JSON.parse(r.labels) as Record<string, string>,
    createdAt: r.created_at,
  };
}
function toName(r: RawName): ImageNameRow {
  return {
    name: r.name,
    imageId: r.image_id,
    targetDigest: r.target_digest,
    targetMediaType: r.target_media_type,
    createdAt: r.created_at,
  };
}

/** Per connection: bumped by every change to the image tables (see ImageMetadata.generation). */
const generations = new WeakMap<Db, { n: number }>();

export class ImageMetadata {
  /** Statements compiled once (db.ts statements()). */
  private readonly sql: (sql: string) => Statement;

  private readonly changes: { n: number };

  constructor(private readonly db: Db) {
    this.sql = statements(db);
    let g = generations.get(db);
    if (!g) generations.set(db, (g = { n: 0 }));
    this.changes = g;
  }

  /**
   * A number that changes whenever an image, name or blob record does (through any
   * ImageMetadata over the same connection; berthd is the database's one writer). What is
   * derived from the records (ImageService's image records, a container's image_ref) is
   * cached against it and stays right.
   */
  get generation(): number {
    return this.changes.n;
  }

  /**
   * Stores an image with its blobs and points `names` at it, in one transaction. A name that
   * pointed at another image moves (like `docker tag`); an image left without names by that
   * move is kept (it may still be in use) and is reported dangling by list().
   */
  put(
    image: ImageRow,
    blobs: string[],
    names: { name: string; targetDigest: string; targetMediaType: string }[],
  ): void {
    const now = Date.now();
    this.changes.n++;
    this.db.transaction(() => {
      this.sql(
        `INSERT INTO images (id, manifest_digest, manifest_media_type, chain_id, snapshotter, size, labels, created_at)
           VALUES (@id, @manifestDigest, @manifestMediaType, @chainId, @snapshotter, @size, @labels, @createdAt)
           ON CONFLICT(id) DO UPDATE SET manifest_digest = excluded.manifest_digest,
             manifest_media_type = excluded.manifest_media_type, chain_id = excluded.chain_id,
             snapshotter = excluded.snapshotter, size = excluded.size, labels = excluded.labels`,
      ).run({ ...image, labels: JSON.stringify(image.labels) });
      const addBlob = this.sql(`INSERT OR IGNORE INTO image_blobs (image_id, digest) VALUES (?, ?)`);
      for (const b of blobs) addBlob.run(image.id, b);
      const addName = this.sql(
        `INSERT INTO image_names (name, image_id, target_digest, target_media_type, created_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT(name) DO UPDATE SET image_id = excluded.image_id, target_digest = excluded.target_digest,
           target_media_type = excluded.target_media_type`,
      );
      for (const n of names) addName.run(n.name, image.id, n.targetDigest, n.targetMediaType, now);
    })();
  }

  get(id: string): ImageRow | undefined {
    const r = this.sql(`SELECT * FROM images WHERE id = ?`).get(id) as RawImage | undefined;
    return r && toImage(r);
  }

  /** Image IDs starting with `prefix` (for short IDs as crictl prints them). */
  idsWithPrefix(prefix: string): string[] {
    const rows = this.sql(`SELECT id FROM images WHERE substr(id, 1, ?) = ?`).all(prefix.length, prefix) as {
      id: string;
    }[];
    return rows.map((r) => r.id);
  }

  list(): ImageRow[] {
    return (this.sql(`SELECT * FROM images ORDER BY created_at, id`).all() as RawImage[]).map(toImage);
  }

  nameRow(name: string): ImageNameRow | undefined {
    const r = this.sql(`SELECT * FROM image_names WHERE name = ?`).get(name) as RawName | undefined;
    return r && toName(r);
  }

  namesOf(imageId: string): ImageNameRow[] {
    return (this.sql(`SELECT * FROM image_names WHERE image_id = ? ORDER BY name`).all(imageId) as RawName[]).map(
      toName,
    );
  }

  allNames(): ImageNameRow[] {
    return (this.sql(`SELECT * FROM image_names ORDER BY name`).all() as RawName[]).map(toName);
  }

  /** Images whose name resolved to `digest` (a manifest or index digest). */
  idsByTargetDigest(digest: string): string[] {
    const rows = this.sql(
      `SELECT DISTINCT image_id FROM image_names WHERE target_digest = ?
         UNION SELECT id FROM images WHERE manifest_digest = ?`,
    ).all(digest, digest) as { image_id: string }[];
    return rows.map((r) => r.image_id);
  }

  blobsOf(imageId: string): string[] {
    return (this.sql(`SELECT digest FROM image_blobs WHERE image_id = ?`).all(imageId) as { digest: string }[]).map(
      (r) => r.digest,
    );
  }

  /** Every blob referenced by some image. */
  allBlobs(): Set<string> {
    const rows = this.sql(`SELECT DISTINCT digest FROM image_blobs`).all() as { digest: string }[];
    return new Set(rows.map((r) => r.digest));
  }

  /**
   * Removes one name (one transaction). When no tag name ("repo:tag") is left for the image,
   * the image goes too, with its digest names ("repo@sha256:..."): like `docker rmi repo:tag`,
   * digest references alone do not keep an image once its last tag is removed. Removing a
   * digest name of an image that still has tags removes only that name.
   */
  removeName(name: string): { imageId: string; imageRemoved: boolean; removedNames: string[] } | undefined {
    this.changes.n++;
    return this.db.transaction(() => {
      const row = this.nameRow(name);
      if (!row) return undefined;
      this.sql(`DELETE FROM image_names WHERE name = ?`).run(name);
      const left = this.namesOf(row.imageId).map((n) => n.name);
      const tagsLeft = left.filter((n) => !n.includes("@"));
      if (tagsLeft.length === 0 && (!name.includes("@") || left.length === 0)) {
        this.sql(`DELETE FROM images WHERE id = ?`).run(row.imageId);
        return { imageId: row.imageId, imageRemoved: true, removedNames: [name, ...left] };
      }
      return { imageId: row.imageId, imageRemoved: false, removedNames: [name] };
    })();
  }

  /** Removes an image and all its names. Returns the names removed, or undefined if absent. */
  removeImage(id: string): string[] | undefined {
    this.changes.n++;
    return this.db.transaction(() => {
      if (!this.get(id)) return undefined;
      const names = this.namesOf(id).map((n) => n.name);
      this.sql(`DELETE FROM images WHERE id = ?`).run(id); // names and blobs cascade
      return names;
    })();
  }
}
