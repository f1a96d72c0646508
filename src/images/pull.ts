// One pull of one image, as the image service runs it for everyone waiting on that image:
// resolve the reference, store the manifest(s), download config and layers (layers at once,
// under the global download limit) and hand them to the unpacker in order. The unpacker reads
// each layer as it downloads (growing-blob.ts) and commits it once the download checked out.
//
// Stopping: `signal` aborts when every caller of the pull has gone (service.ts shares a pull
// between callers). The pull also stops itself when a transfer it waits on moves no bytes for
// the progress timeout (progress-watch.ts), with DEADLINE_EXCEEDED naming the image, the
// stalled blob and the timeout. Either way the downloads are aborted, their partial ingests
// removed (content-store.ts), the lease dropped, and a collection requested so blobs already
// committed for nothing are reclaimed too.
import type { Readable } from "node:stream";
import type { LeaseMetadata, LeaseResource } from "../metadata/leases.js";
import { DeadlineExceededError, InvalidArgumentError, NotFoundError } from "../util/errors.js";
import type { AuthConfig } from "./auth.js";
import type { ContentStore } from "./content-store.js";
import type { Semaphore } from "./limit.js";
import { parseManifest } from "./manifest.js";
import {
  isIndex,
  isManifest,
  type Descriptor,
  type ImageConfigJson,
  type IndexJson,
  type ManifestJson,
  type Platform,
} from "./mediatypes.js";
import { formatPlatform, selectManifest } from "./platform.js";
import { GrowingBlobReader } from "./growing-blob.js";
import { fetchSmallBlob } from "./small-blob.js";
import {
  bothObservers,
  ProgressWatch,
  type TransferInfo,
  type TransferObserver,
  type WatchClock,
} from "./progress-watch.js";
import { digestName, formatReference, tagName, type ImageReference } from "./reference.js";
import type { RegistryClient } from "./registry.js";
import type { RetryPolicy } from "./retry.js";
import type { ImageRecord, PullProgress } from "./service.js";

/** An image config larger than this is downloaded to the store before it is read. */
const MAX_CONFIG_IN_MEMORY = 16 << 20;

export interface PullDeps {
  content: ContentStore;
  registry: RegistryClient;
  leases: LeaseMetadata;
  downloads: Semaphore;
  retry?: RetryPolicy;
  leaseMs: number;
  /** no bytes for this long while a transfer is open aborts the pull; 0 never */
  progressTimeoutMs: number;
  clock?: WatchClock;
  storeImage(args: {
    target: Descriptor;
    manifestDesc: Descriptor;
    manifest: ManifestJson;
    names: string[];
    blobs: string[];
    labels: Record<string, string>;
    /** the manifest's config, parsed; in the store once `stored` resolves */
    config: ImageConfigJson;
    stored: Promise<unknown>;
    layerReady: Promise<void>[];
    layerStream: (i: number) => Readable | undefined;
    onLayer: (digest: string, phase: "unpacking" | "unpacked") => void;
    hold: (r: LeaseResource) => void;
    signal: AbortSignal;
  }): Promise<ImageRecord>;
  /** background collection after an aborted pull */
  requestGc(): unknown;
}

export interface PullArgs {
  ref: ImageReference;
  auth: AuthConfig | undefined;
  platform: Platform;
  labels?: Record<string, string>;
  onProgress?: (p: PullProgress) => void;
}

/** "5m0s"-style text of a millisecond count, as the config's durations are written. */
export function formatMs(ms: number): string {
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

export function stallError(image: string, timeoutMs: number, open: TransferInfo[]): DeadlineExceededError {
  const what = open.map((t) => `${t.what} (${t.done}${t.total ? ` of ${t.total}` : ""} bytes received)`).join(", ");
  return new DeadlineExceededError(
    `pull of ${image} made no progress for ${formatMs(timeoutMs)} (image_pull_progress_timeout): stalled on ${what || "the registry"}`,
  );
}

export async function runPull(d: PullDeps, a: PullArgs, callers: AbortSignal): Promise<ImageRecord> {
  const { ref, auth } = a;
  const name = formatReference(ref);
  const progress = (p: Omit<PullProgress, "ref">) => a.onProgress?.({ ref: name, ...p });
  const stalled = new AbortController();
  const watch = new ProgressWatch(
    d.progressTimeoutMs,
    (open) => stalled.abort(stallError(name, d.progressTimeoutMs, open)),
    d.clock,
  );
  const signal = AbortSignal.any([callers, stalled.signal]);
  const lease = d.leases.create({ expiresInMs: d.leaseMs, labels: { purpose: `pull ${name}` } });
  const hold = (r: LeaseResource) => d.leases.addResource(lease, r);
  const fetchManifest = async (digest?: string) => {
    const t = watch.begin(`manifest ${digest ?? ref.digest ?? ref.tag ?? "latest"}`, 0, 0);
    try {
      return await d.registry.fetchManifest(ref, auth, digest, { signal, onData: (n) => t.progress(n) });
    } finally {
      t.end();
    }
  };
  // Work started and not awaited at once: storing the manifests and fetching config and layers
  // overlap (a small image's pull was one round trip and commit after another). Everything is
  // awaited before the image is recorded, and settled before the pull returns or throws.
  const pending: Promise<unknown>[] = [];
  const background = <T>(p: Promise<T>): Promise<T> => {
    p.catch(() => {}); // observed where awaited; avoid an unhandled rejection meanwhile
    pending.push(p);
    return p;
  };
  let failed = false;
  const followers: GrowingBlobReader[] = [];
  try {
    const top = await fetchManifest();
    const target = top.descriptor;
    hold({ type: "content", resource: target.digest });
    const stored: Promise<unknown>[] = [background(d.content.writeBuffer(top.body, target))];
    progress({ phase: "resolved", digest: target.digest });
    const blobs = [target.digest];

    let manifestDesc = target;
    let manifestBody = top.body;
    if (isIndex(target.mediaType)) {
      const index = JSON.parse(top.body.toString("utf8")) as IndexJson;
      const chosen = selectManifest(index.manifests ?? [], a.platform);
      if (!chosen) {
        const have = (index.manifests ?? []).filter((m) => m.platform).map((m) => formatPlatform(m.platform!));
        throw new NotFoundError(
          `${name} has no image for platform ${formatPlatform(a.platform)} (it has: ${have.join(", ") || "none"})`,
        );
      }
      const m = await fetchManifest(chosen.digest);
      if (!isManifest(m.descriptor.mediaType)) {
        throw new InvalidArgumentError(
          `${name}: index entry ${chosen.digest} is not an image manifest (${m.descriptor.mediaType})`,
        );
      }
      manifestDesc = m.descriptor;
      manifestBody = m.body;
      hold({ type: "content", resource: manifestDesc.digest });
      stored.push(background(d.content.writeBuffer(m.body, { digest: chosen.digest, size: chosen.size })));
      blobs.push(manifestDesc.digest);
    }
    const manifest = parseManifest(manifestBody, name);

    const fetchBlob = (desc: Descriptor, observer: TransferObserver = watch) =>
      d.content.ingest(desc, d.registry.blobSource(ref, desc, auth), {
        onProgress: (done, total) => progress({ phase: "downloading", digest: desc.digest, done, total }),
        retry: d.retry,
        signal,
        observer,
      });
    // One commit holds config and layers.
    d.leases.addResources(lease, [
      { type: "content", resource: manifest.config.digest },
      ...manifest.layers.map((l) => ({ type: "content", resource: l.digest })),
    ]);
    // Every layer starts downloading now (under the global limit); unpacking follows in order.
    const layerReady = manifest.layers.map((l) => {
      const follower = new GrowingBlobReader(
        { ingest: d.content.ingestDataPath(l.digest), blob: d.content.path(l.digest) },
        l.size,
      );
      followers.push(follower);
      const ready = d.downloads.run(() => fetchBlob(l, bothObservers(watch, follower)), signal);
      ready.then(
        () => follower.complete(),
        (err: unknown) => follower.fail(err),
      );
      return background(ready.then(() => progress({ phase: "downloaded", digest: l.digest })));
    });
    // The config, small, comes into memory (small-blob.ts): the unpack starts from it while
    // it is stored beside the layers. An image is recorded only once both manifests and the
    // config are stored.
    // (A config past MAX_CONFIG_IN_MEMORY, or one already stored, is read from the store.)
    const cfg = manifest.config;
    const inMemory = cfg.size <= MAX_CONFIG_IN_MEMORY && !(await d.content.has(cfg.digest));
    const configBody = inMemory
      ? await fetchSmallBlob(d.registry.blobSource(ref, cfg, auth), cfg, {
          retry: d.retry,
          signal,
          observer: watch,
          onProgress: (done, total) => progress({ phase: "downloading", digest: cfg.digest, done, total }),
        })
      : await fetchBlob(cfg).then(() => d.content.read(cfg.digest));
    if (inMemory) stored.push(background(d.content.writeBuffer(configBody, cfg)));
    const allStored = background(Promise.all(stored));
    const record = await d.storeImage({
      config: JSON.parse(configBody.toString("utf8")) as ImageConfigJson,
      stored: allStored,
      target,
      manifestDesc,
      manifest,
      names: [tagName(ref.digest ? { ...ref, tag: undefined } : ref), digestName(ref, target.digest)].filter(
        (n): n is string => !!n,
      ),
      blobs,
      labels: a.labels ?? {},
      layerReady,
      layerStream: (i) => followers[i],
      onLayer: (digest, phase) => progress({ phase, digest }),
      hold,
      signal,
    });
    progress({ phase: "done", digest: record.id });
    return record;
  } catch (err) {
    failed = true;
    // Whatever an aborted request threw, the reason is the abort: cancelled, or stalled.
    if (signal.aborted) throw signal.reason;
    throw err;
  } finally {
    // Aborted or failed, nothing of this pull keeps running once it returns.
    await Promise.allSettled(pending);
    for (const f of followers) f.destroy(); // those the unpacker did not read (an existing layer)
    watch.stop();
    d.leases.delete(lease);
    // A failed pull may have committed blobs that started beside the one that failed.
    if (signal.aborted || (failed && pending.length > 0)) d.requestGc();
  }
}
