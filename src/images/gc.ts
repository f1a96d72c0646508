// Image garbage collection, as containerd's metadata GC does it for berth's stores: blobs and
// committed snapshots that nothing references are removed. Roots are every image's blobs and
// top snapshot, live leases (pulls in progress), and active and view snapshots (containers'
// rootfs); the ancestors of every kept snapshot are kept. A collection runs exclusive of
// pulls (the shared lock); requests made while one runs share the single one that follows.
import type { ImageConfigJson } from "./mediatypes.js";
import type { ImageMetadata } from "../metadata/images.js";
import type { LeaseMetadata } from "../metadata/leases.js";
import type { Snapshotter } from "../snapshots/types.js";
import type { ContentStore } from "./content-store.js";
import type { SharedLock } from "./limit.js";

export interface GcResult {
  removedBlobs: string[];
  removedSnapshots: string[];
  /** interrupted downloads older than the stale-ingest bound */
  removedIngests: string[];
}

export interface GcDeps {
  content: ContentStore;
  snapshotter: Snapshotter;
  images: ImageMetadata;
  leases: LeaseMetadata;
  /** Held shared by pulls, exclusive by a collection. */
  lock: SharedLock;
  /** The image service's cache of parsed image configs; entries of removed images are dropped. */
  configs: Map<string, ImageConfigJson>;
  /** Interrupted downloads that got no data for this long are removed. */
  staleIngestMs: number;
  /** Where a failed background collection (request()) is reported. */
  onError: (err: unknown) => void;
}

export class GarbageCollector {
  /** the background collection request() started, and whether another must follow it */
  private running: Promise<GcResult> | undefined;
  private again: Promise<GcResult> | undefined;

  constructor(private readonly d: GcDeps) {}

  /**
   * Resolves once no background collection runs or waits to run. berthd's stop waits for it: a
   * collection cut short by the process exiting leaves its snapshot directories (removed-*)
   * until the next start's cleanup.
   */
  async settled(): Promise<void> {
    for (let p = this.again ?? this.running; p; p = this.again ?? this.running) await p.catch(() => undefined);
  }

  /** Removes blobs and committed snapshots nothing references. */
  collect(): Promise<GcResult> {
    const d = this.d;
    return d.lock.withExclusive(async () => {
      const removedIngests = await d.content.pruneIngests(d.staleIngestMs);
      const keepBlobs = d.images.allBlobs();
      const keepSnaps = new Set<string>();
      const snapType = `snapshot/${d.snapshotter.name}`;
      for (const r of d.leases.liveResources()) {
        if (r.type === "content") keepBlobs.add(r.resource);
        else if (r.type === snapType) keepSnaps.add(r.resource);
      }
      for (const img of d.images.list())
        if (img.chainId && img.snapshotter === d.snapshotter.name) keepSnaps.add(img.chainId);
      const all = d.snapshotter.list();
      const byKey = new Map(all.map((s) => [s.key, s]));
      for (const s of all) if (s.kind !== "committed") keepSnaps.add(s.key);
      // Keep the ancestors of everything kept.
      for (const k of [...keepSnaps]) {
        for (let p = byKey.get(k)?.parent; p && !keepSnaps.has(p); p = byKey.get(p)?.parent) keepSnaps.add(p);
      }
      const removedBlobs: string[] = [];
      for (const b of await d.content.list()) {
        if (!keepBlobs.has(b.digest)) {
          await d.content.delete(b.digest);
          removedBlobs.push(b.digest);
        }
      }
      // Remove unreferenced snapshots leaves first.
      const removedSnapshots: string[] = [];
      const doomed = new Set(all.filter((s) => !keepSnaps.has(s.key)).map((s) => s.key));
      while (doomed.size > 0) {
        const parents = new Set([...doomed].map((k) => byKey.get(k)?.parent).filter((p): p is string => !!p));
        const leaves = [...doomed].filter((k) => !parents.has(k));
        if (leaves.length === 0) break;
        for (const k of leaves) {
          await d.snapshotter.remove(k);
          removedSnapshots.push(k);
          doomed.delete(k);
        }
      }
      for (const id of [...d.configs.keys()]) if (!d.images.get(id)) d.configs.delete(id);
      return { removedBlobs, removedSnapshots, removedIngests };
    });
  }

  /**
   * Collects garbage in the background, as containerd does after an image is deleted:
   * requests made while one collection runs share the single collection that follows it,
   * so it sees their deletions. Failures go to `onError`; the promise never rejects.
   */
  request(): Promise<GcResult | undefined> {
    const run = (): Promise<GcResult> => {
      const p = this.collect().finally(() => {
        if (this.running === p) this.running = undefined;
      });
      this.running = p;
      return p;
    };
    let p: Promise<GcResult>;
    if (!this.running) p = run();
    else {
      this.again ??= this.running
        .catch(() => undefined)
        .then(() => {
          this.again = undefined;
          return run();
        });
      p = this.again;
    }
    return p.catch((err: unknown) => {
      this.d.onError(err);
      return undefined;
    });
  }
}
