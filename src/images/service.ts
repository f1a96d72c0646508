// The image service: pull (resolve, download, verify, unpack), list, status, remove,
// disk usage, garbage collection, and rootfs preparation for the runtime. The CRI
// ImageService is a thin translation on top of this class.
//
// Durability: blobs are committed by the content store (verified, fsynced, renamed); the
// snapshots are committed per layer; the image record is written last, in one transaction.
// Until then a lease keeps GC away from what the pull has written; after a crash the lease
// expires and GC reclaims whatever was not recorded.
import { join } from "node:path";
import type { Readable } from "node:stream";
import type { Db } from "../metadata/db.js";
import { ImageMetadata, type ImageRow } from "../metadata/images.js";
import { LeaseMetadata, type LeaseResource } from "../metadata/leases.js";
import { createSnapshotter } from "../snapshots/index.js";
import type { Mount, Snapshotter, StagedSnapshot } from "../snapshots/types.js";
import { FailedPreconditionError, InvalidArgumentError, NotFoundError } from "../util/errors.js";
import type { AuthConfig } from "./auth.js";
import { ContentStore } from "./content-store.js";
import { GarbageCollector, type GcResult } from "./gc.js";
import { chainIds, repoOf } from "./manifest.js";
import { type FsUsage, fsUsage } from "./usage.js";
import { LayerUnpacker } from "./layer-unpack.js";
import { Semaphore, SharedLock } from "./limit.js";
import { runPull, type PullDeps } from "./pull.js";
import { SharedFlight } from "./shared-flight.js";
import {
  type Descriptor,
  type ImageConfigJson,
  type ImageRuntimeConfig,
  type ManifestJson,
  type Platform,
} from "./mediatypes.js";
import { formatPlatform, hostPlatform } from "./platform.js";
import {
  digestName,
  formatReference,
  isDigest,
  parseReference,
  repositoryName,
  tagName,
  type ImageReference,
} from "./reference.js";
// The registry client (http.ts) and the layer unpacker (tar, gzip, zstd) are loaded at the first
// pull or unpack: an idle berthd does without them (issue 15, about 13 MiB).
import type { RegistryClient, RegistryClientOptions } from "./registry.js";
import { ImageReadCache, imageRecord } from "./read-cache.js";

export type { GcResult } from "./gc.js";
export type { FsUsage } from "./usage.js";

export interface ImageServiceOptions {
  /** state directory: <root>/content, <root>/snapshots/<snapshotter> */
  root: string;
  db: Db;
  /** snapshotter name ("overlayfs" default, or "native") or an instance */
  snapshotter?: string | Snapshotter;
  registry?: RegistryClientOptions;
  /** layer downloads in flight at once, over all pulls (default 3) */
  maxConcurrentDownloads?: number;
  /** platform to pull from indexes (default: this host) */
  platform?: Platform;
  /** how long a pull's lease protects its content if the process dies (default 1 h) */
  pullLeaseMs?: number;
  /** gc() removes interrupted downloads that got no data for this long (default 24 h) */
  staleIngestMs?: number;
  /**
   * a pull whose open transfers move no bytes for this long is aborted (containerd's
   * image_pull_progress_timeout; default 5 min; 0 never)
   */
  pullProgressTimeoutMs?: number;
  /** where requestGc() reports a failed background collection */
  onGcError?: (err: unknown) => void;
  /**
   * Makes each unpacked layer durable before its snapshot is committed (containerd's
   * image_pull_with_sync_fs): called with the layer's directory, e.g. sys.syncfs. Without it a
   * power cut soon after a pull can leave a committed snapshot with empty or cut-off files.
   */
  syncLayer?: (dir: string) => Promise<void>;
}

export interface PullProgress {
  ref: string;
  phase: "resolved" | "downloading" | "downloaded" | "unpacking" | "unpacked" | "done";
  digest?: string;
  /** bytes so far, and expected, for "downloading" */
  done?: number;
  total?: number;
}

export interface PullOptions {
  onProgress?: (p: PullProgress) => void;
  platform?: Platform;
  labels?: Record<string, string>;
  /** this caller gives up (CANCELLED) when it aborts; see pull() */
  signal?: AbortSignal;
}

export interface ImageRecord {
  /** config digest "sha256:..." */
  id: string;
  /** "docker.io/library/busybox:latest" */
  repoTags: string[];
  /** "docker.io/library/busybox@sha256:<manifest or index digest>" */
  repoDigests: string[];
  /** bytes of manifest, config and compressed layers */
  size: number;
  manifestDigest: string;
  /** chain ID of the top layer (committed snapshot key); "" for an image without layers */
  chainId: string;
  snapshotter: string;
  labels: Record<string, string>;
  createdAt: number;
  os: string;
  architecture: string;
  variant?: string;
  /** User, Env, Cmd, Entrypoint, WorkingDir, ExposedPorts, Volumes, StopSignal, Labels as in the image config */
  config: ImageRuntimeConfig;
}

export interface RemoveResult {
  imageId: string;
  removedNames: string[];
  imageRemoved: boolean;
}

export class ImageService {
  readonly content: ContentStore;
  readonly snapshotter: Snapshotter;
  readonly images: ImageMetadata;
  readonly leases: LeaseMetadata;
  private registryClient: Promise<RegistryClient> | undefined;
  private readonly downloads: Semaphore;
  private readonly pulls = new SharedFlight<ImageRecord>();
  private readonly unpacker: LayerUnpacker;
  private readonly gcLock = new SharedLock();
  private readonly configs = new Map<string, ImageConfigJson>();
  /** What the polled reads derive from the records, until the records change (read-cache.ts). */
  private readonly reads = new ImageReadCache(() => this.images.generation);
  private readonly platform: Platform;
  private readonly pullLeaseMs: number;
  private readonly staleIngestMs: number;
  private readonly collector: GarbageCollector;
  private readonly pullDeps: Omit<PullDeps, "registry">;

  private constructor(readonly opts: ImageServiceOptions) {
    this.content = new ContentStore(join(opts.root, "content"));
    this.snapshotter =
      typeof opts.snapshotter === "object"
        ? opts.snapshotter
        : createSnapshotter(opts.snapshotter ?? "overlayfs", opts.db, opts.root);
    this.images = new ImageMetadata(opts.db);
    this.unpacker = new LayerUnpacker(this.snapshotter, this.content, opts.syncLayer);
    this.leases = new LeaseMetadata(opts.db);
    this.downloads = new Semaphore(opts.maxConcurrentDownloads ?? 3);
    this.platform = opts.platform ?? hostPlatform();
    this.pullLeaseMs = opts.pullLeaseMs ?? 3600_000;
    this.staleIngestMs = opts.staleIngestMs ?? 24 * 3600_000;
    const { content, snapshotter, images, leases, configs, staleIngestMs, gcLock: lock } = this;
    const onError = (err: unknown) => this.opts.onGcError?.(err);
    const deps = { content, snapshotter, images, leases, lock, configs, staleIngestMs, onError };
    this.collector = new GarbageCollector(deps);
    this.pullDeps = {
      content,
      leases,
      downloads: this.downloads,
      retry: opts.registry?.retry,
      leaseMs: this.pullLeaseMs,
      progressTimeoutMs: opts.pullProgressTimeoutMs ?? 5 * 60_000,
      storeImage: (args) => this.storeImage(args),
      requestGc: () => void this.requestGc(),
    };
  }

  /**
   * Builds the service and clears what a crash left half-made: orphan snapshot dirs, and
   * interrupted downloads past the stale bound (recent ones stay for the pull to resume).
   */
  static async create(opts: ImageServiceOptions): Promise<ImageService> {
    const s = new ImageService(opts);
    await s.content.init();
    await s.content.pruneIngests(s.staleIngestMs);
    await s.snapshotter.cleanup();
    return s;
  }

  // ---------------------------------------------------------------- pull

  /** The registry client, made at the first pull. */
  private registry(): Promise<RegistryClient> {
    this.registryClient ??= import("./registry.js").then((m) => new m.RegistryClient(this.opts.registry));
    return this.registryClient;
  }

  /**
   * Pulls `ref` for this host's platform and unpacks it (pull.ts). Concurrent pulls of one ref
   * share the work; a caller whose `signal` aborts leaves it, and the work stops (cleaning up
   * its partial downloads) only when no caller is left.
   */
  pull(ref: string, auth?: AuthConfig, opts: PullOptions = {}): Promise<ImageRecord> {
    const parsed = parseReference(ref);
    const platform = opts.platform ?? this.platform;
    const name = formatReference(parsed);
    const key = `${name}|${formatPlatform(platform)}`;
    const { onProgress, labels } = opts;
    return this.pulls.do(
      key,
      (signal) =>
        this.gcLock.withShared(() =>
          this.registry().then((registry) =>
            runPull({ ...this.pullDeps, registry }, { ref: parsed, auth, platform, labels, onProgress }, signal),
          ),
        ),
      { signal: opts.signal, what: `pull of ${name}` },
    );
  }

  /**
   * Unpacks a manifest whose blobs are (or are becoming: `layerReady`) in the content store
   * and records the image with `names`. Shared by pull and the archive importers.
   */
  async storeImage(args: {
    target: Descriptor;
    manifestDesc: Descriptor;
    manifest: ManifestJson;
    names: string[];
    blobs: string[];
    labels: Record<string, string>;
    /** the config, when the caller has it before its commit (pull.ts) */
    config?: ImageConfigJson;
    /** resolves once the manifests and config are stored: the image is recorded after */
    stored?: Promise<unknown>;
    layerReady?: Promise<void>[];
    /** layer `i`'s bytes while they download (pull.ts): unpacked as they arrive */
    layerStream?: (i: number) => Readable | undefined;
    onLayer?: (digest: string, phase: "unpacking" | "unpacked") => void;
    hold?: (r: LeaseResource) => void;
    /** stops before the next layer's unpack, and before the image is recorded */
    signal?: AbortSignal;
  }): Promise<ImageRecord> {
    const { manifest } = args;
    const config = args.config ?? (await this.readConfig(manifest.config.digest));
    const diffIds = config.rootfs?.diff_ids ?? [];
    if (diffIds.length !== manifest.layers.length) {
      throw new InvalidArgumentError(
        `image ${manifest.config.digest}: config lists ${diffIds.length} diff IDs for ${manifest.layers.length} layers`,
      );
    }
    const chain = chainIds(diffIds);
    for (let i = 0; i < manifest.layers.length; i++) {
      args.hold?.({ type: `snapshot/${this.snapshotter.name}`, resource: chain[i] });
      const ready = args.layerReady?.[i];
      const stream = ready && args.layerStream?.(i);
      if (!stream) await ready;
      args.signal?.throwIfAborted();
      args.onLayer?.(manifest.layers[i].digest, "unpacking");
      const parent = i > 0 ? chain[i - 1] : undefined;
      await this.unpacker.unpack(manifest.layers[i], diffIds[i], chain[i], parent, stream && { stream, ready });
      args.onLayer?.(manifest.layers[i].digest, "unpacked");
    }
    const size = args.manifestDesc.size + manifest.config.size + manifest.layers.reduce((n, l) => n + l.size, 0);
    const row: ImageRow = {
      id: manifest.config.digest,
      manifestDigest: args.manifestDesc.digest,
      manifestMediaType: args.manifestDesc.mediaType,
      chainId: chain.length > 0 ? chain[chain.length - 1] : "",
      snapshotter: this.snapshotter.name,
      size,
      labels: args.labels,
      createdAt: Date.now(),
    };
    const blobs = [
      ...new Set([
        ...args.blobs,
        args.manifestDesc.digest,
        manifest.config.digest,
        ...manifest.layers.map((l) => l.digest),
      ]),
    ];
    await args.stored;
    if (args.config && !this.configs.has(row.id)) this.configs.set(row.id, args.config);
    args.signal?.throwIfAborted();
    this.images.put(
      row,
      blobs,
      args.names.map((n) => ({ name: n, targetDigest: args.target.digest, targetMediaType: args.target.mediaType })),
    );
    return this.record(this.images.get(row.id)!);
  }

  private async readConfig(digest: string): Promise<ImageConfigJson> {
    let c = this.configs.get(digest);
    if (!c) {
      c = await this.content.readJson<ImageConfigJson>(digest);
      this.configs.set(digest, c);
    }
    return c;
  }

  // ---------------------------------------------------------------- queries

  private async record(row: ImageRow): Promise<ImageRecord> {
    return imageRecord(row, this.images.namesOf(row.id), await this.readConfig(row.id));
  }

  /** Changes whenever an image record does (ImageMetadata.generation): what is derived from them may be kept until then. */
  get generation(): number {
    return this.images.generation;
  }

  /** Finds the image an ID, ID prefix, digest or reference names; undefined when none. */
  resolveId(s: string): string | undefined {
    return this.reads.resolve(s, () => this.resolveUncached(s));
  }

  private resolveUncached(s: string): string | undefined {
    const t = s.trim();
    const hexId = /^[a-f0-9]{64}$/.test(t) ? `sha256:${t}` : t;
    if (isDigest(hexId)) {
      if (this.images.get(hexId)) return hexId;
      const byTarget = this.images.idsByTargetDigest(hexId);
      return byTarget.length === 1 ? byTarget[0] : undefined;
    }
    const short = /^(?:sha256:)?([a-f0-9]{4,63})$/.exec(t);
    if (short) {
      const ids = this.images.idsWithPrefix(`sha256:${short[1]}`);
      if (ids.length === 1) return ids[0];
      if (ids.length > 1)
        throw new InvalidArgumentError(`short image ID ${t} is ambiguous (${ids.length} images match)`);
      // else: may still be a one-word name like "abcd" -> docker.io/library/abcd
    }
    let ref: ImageReference;
    try {
      ref = parseReference(t);
    } catch {
      return undefined;
    }
    if (ref.digest) {
      const exact = this.images.nameRow(digestName(ref, ref.digest));
      if (exact) return exact.imageId;
      const repo = repositoryName(ref);
      const match = this.images.allNames().find((n) => repoOf(n.name) === repo && n.targetDigest === ref.digest);
      if (match) return match.imageId;
      const m = this.images
        .list()
        .find((i) => i.manifestDigest === ref.digest && this.images.namesOf(i.id).some((n) => repoOf(n.name) === repo));
      return m?.id;
    }
    return this.images.nameRow(tagName(ref)!)?.imageId;
  }

  /** The image `ref` (name, ID, short ID or digest) names, or undefined. */
  async status(ref: string): Promise<ImageRecord | undefined> {
    const id = this.resolveId(ref);
    if (!id) return undefined;
    return this.reads.record(id, async () => {
      const row = this.images.get(id);
      return row && this.record(row);
    });
  }

  /** All images, or those a reference/ID filter names. */
  async list(filter: { ref?: string } = {}): Promise<ImageRecord[]> {
    if (filter.ref) {
      const r = await this.status(filter.ref);
      return r ? [r] : [];
    }
    return this.reads.list(() => Promise.all(this.images.list().map((r) => this.record(r))));
  }

  /** The full image config JSON (for the runtime: env, user, entrypoint, ...). */
  async imageConfig(imageId: string): Promise<ImageConfigJson> {
    if (!this.images.get(imageId)) throw new NotFoundError(`image ${imageId} not found`);
    return this.readConfig(imageId);
  }

  // ---------------------------------------------------------------- remove

  /**
   * Removes by ID (or digest): the image and all its names. By tag: that name only, and the
   * image when it was its last tag (digest names do not keep it). Content and snapshots are
   * reclaimed by gc(). NotFoundError when nothing matches.
   */
  async remove(ref: string): Promise<RemoveResult> {
    const t = ref.trim();
    let parsed: ImageReference | undefined;
    try {
      parsed = parseReference(t);
    } catch {
      parsed = undefined;
    }
    const looksLikeId = /^(sha256:)?[a-f0-9]{4,64}$/.test(t);
    if (parsed && !looksLikeId) {
      const name = parsed.digest ? digestName(parsed, parsed.digest) : tagName(parsed)!;
      const r = this.images.removeName(name);
      if (r) {
        if (r.imageRemoved) this.configs.delete(r.imageId);
        return r;
      }
    }
    const id = this.resolveId(t);
    if (!id) throw new NotFoundError(`image ${JSON.stringify(ref)} not found`);
    const names = this.images.removeImage(id) ?? [];
    this.configs.delete(id);
    return { imageId: id, removedNames: names, imageRemoved: true };
  }

  // ---------------------------------------------------------------- runtime hooks

  /** Creates container `containerKey`'s writable snapshot on the image's layers and returns its mounts. */
  async prepareRootfs(
    imageId: string,
    containerKey: string,
    opts: { readonly?: boolean; labels?: Record<string, string> } = {},
  ): Promise<Mount[]> {
    const parent = this.rootfsParent(imageId);
    return opts.readonly
      ? this.snapshotter.view(containerKey, parent, { labels: opts.labels })
      : this.snapshotter.prepare(containerKey, parent, { labels: opts.labels });
  }

  /**
   * prepareRootfs (writable) in two steps: the snapshot's files are made now, and it is
   * recorded by the returned commit(), in a transaction of the metadata database the caller
   * may have open (CreateContainer records the container with it: one commit for both).
   */
  async stageRootfs(
    imageId: string,
    containerKey: string,
    opts: { labels?: Record<string, string> } = {},
  ): Promise<StagedSnapshot> {
    return this.snapshotter.stage("active", containerKey, this.rootfsParent(imageId), opts.labels ?? {});
  }

  /** The committed snapshot a container of image `imageId` starts from. */
  private rootfsParent(imageId: string): string | undefined {
    const id = this.resolveId(imageId);
    const row = id ? this.images.get(id) : undefined;
    if (!row) throw new NotFoundError(`image ${imageId} not found`);
    if (row.snapshotter !== this.snapshotter.name) {
      throw new FailedPreconditionError(
        `image ${row.id} was unpacked by snapshotter ${row.snapshotter}, not ${this.snapshotter.name}`,
      );
    }
    return row.chainId || undefined;
  }

  /** Removes a container's snapshot (idempotent). */
  async removeRootfs(containerKey: string): Promise<void> {
    if (this.snapshotter.exists(containerKey)) await this.snapshotter.remove(containerKey);
  }

  /**
   * Removes a container's snapshot in two steps (Snapshotter.forget): the record is deleted now,
   * in the caller's transaction; the returned function, called once that committed, moves the
   * files out of the way and returns where they are, for the caller to delete in the background
   * (the snapshotter's start-up cleanup deletes them after a crash). Undefined when there is no
   * snapshot.
   */
  forgetRootfs(containerKey: string): (() => string | undefined) | undefined {
    return this.snapshotter.exists(containerKey) ? this.snapshotter.forget(containerKey) : undefined;
  }

  // ---------------------------------------------------------------- usage and GC

  /** Bytes and inodes of the content store and the snapshots (usage.ts). */
  fsUsage(): Promise<FsUsage> {
    return fsUsage(this.content, this.snapshotter, this.opts.root);
  }

  /** Removes what nothing references (gc.ts); runs exclusive of pulls. */
  gc(): Promise<GcResult> {
    return this.collector.collect();
  }

  /** Resolves once no background collection runs or waits to (gc.ts); berthd's stop waits for it. */
  gcSettled(): Promise<void> {
    return this.collector.settled();
  }

  /** Collects garbage in the background; concurrent requests share one collection (gc.ts). */
  requestGc(): Promise<GcResult | undefined> {
    return this.collector.request();
  }

  /** Whether a collection requested now would start at once: no pull or collection holds its lock or waits for it. */
  get gcFree(): boolean {
    return this.gcLock.free;
  }
}
