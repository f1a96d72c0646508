// Unpacks one layer into a new committed snapshot, from the stored blob or, during a pull, from
// the blob as it downloads (growing-blob.ts). One unpack per chain ID at a time: a second pull
// of a layer being unpacked waits for the first.
import { randomBytes } from "node:crypto";
import type { Readable } from "node:stream";
import type { Snapshotter } from "../snapshots/types.js";
import { AlreadyExistsError } from "../util/errors.js";
import type { ContentStore } from "./content-store.js";
import { SingleFlight } from "./limit.js";
import type { Descriptor } from "./mediatypes.js";

/** A layer's bytes while they download, and the download's end (its digest check). */
export interface DownloadingLayer {
  stream: Readable;
  ready: Promise<unknown>;
}

export class LayerUnpacker {
  private readonly flights = new SingleFlight<void>();

  constructor(
    private readonly snapshotter: Snapshotter,
    private readonly content: ContentStore,
    private readonly syncLayer?: (dir: string) => Promise<void>,
  ) {}

  /**
   * Makes snapshot `chainId` (on `parent`) from `layer`, checked against `diffId`. With
   * `downloading`, reads the bytes as they arrive and commits only after the download's own
   * check passed; a failed download fails the unpack with the download's error.
   */
  async unpack(
    layer: Descriptor,
    diffId: string,
    chainId: string,
    parent: string | undefined,
    downloading?: DownloadingLayer,
  ): Promise<void> {
    for (;;) {
      const joined = this.flights.has(chainId);
      try {
        return await this.flights.do(chainId, () => this.make(layer, diffId, chainId, parent, downloading));
      } catch (err) {
        // The unpack this one joined belonged to another pull, which may have failed for a
        // reason of its own: its caller cancelled and its download (not the blob's) ended. Try
        // again with this pull's bytes; an unpack of our own fails for our own reasons.
        if (!joined || this.snapshotter.exists(chainId)) throw err;
      }
    }
  }

  private async make(
    layer: Descriptor,
    diffId: string,
    chainId: string,
    parent: string | undefined,
    downloading: DownloadingLayer | undefined,
  ): Promise<void> {
    if (this.snapshotter.exists(chainId)) return;
    const key = `extract-${randomBytes(6).toString("hex")} ${chainId}`;
    await this.snapshotter.prepare(key, parent, { labels: { "berth.io/unpacking": chainId } });
    try {
      const { applyLayer } = await import("./unpack.js");
      const dir = this.snapshotter.applyDir(key);
      const opts = { whiteouts: this.snapshotter.whiteouts, expectedDiffId: diffId, layer: layer.digest };
      try {
        await applyLayer(downloading?.stream ?? this.content.openRead(layer.digest), dir, opts);
      } catch (err) {
        // A download that failed (digest, size, cancelled) is the cause, not what the
        // unpacker made of the bytes it had.
        await downloading?.ready;
        throw err;
      }
      await downloading?.ready;
      await this.syncLayer?.(dir);
      await this.snapshotter.commit(chainId, key);
    } catch (err) {
      await this.snapshotter.remove(key).catch(() => {});
      if (err instanceof AlreadyExistsError && this.snapshotter.exists(chainId)) return;
      throw err;
    }
  }
}
