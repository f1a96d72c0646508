// berth.v1.Berth: berth's own gRPC service, served on the CRI socket next to the CRI services
// (proto/berth/v1/berth.proto). It carries what the CRI has no room for and the berth CLI
// needs: pull progress, image archives (load / save / import) and a daemon summary. It is a
// thin translation onto the image service, served through the same wrapper as the CRI
// (cri/server.ts implementService: errors mapped once, cancellation, logging); methods whose
// backend is missing answer UNIMPLEMENTED naming what is missing.
import type * as grpc from "@grpc/grpc-js";
import { PassThrough, type Readable, Writable } from "node:stream";
import {
  ArchiveChunk,
  BerthService,
  type BerthServer,
  ImportImageResponse,
  InfoResponse,
  LoadImagesResponse,
  PullImageProgress,
  type ImportImageRequest,
  type PullImageRequest,
} from "../gen/berth/v1/berth.js";
import type { AuthConfig } from "../images/auth.js";
import { parsePlatform } from "../images/platform.js";
import type { FsUsage, ImageRecord, ImageService, PullProgress } from "../images/service.js";
import type { ServiceHandlers } from "../cri/handlers.js";
import { implementService } from "../cri/server.js";
import { InvalidArgumentError, UnimplementedError } from "../util/errors.js";
import type { Logger } from "../util/log.js";
import type { BerthArchives } from "./archives.js";

export type { BerthArchives } from "./archives.js";

/**
 * The image archives of archives.ts imageArchives(images), that module (tar, the archive
 * formats, the layer unpacker) loaded at the first load, save or import: an idle berthd does
 * without it (issue 15).
 */
export function lazyImageArchives(images: ImageService): BerthArchives {
  let archives: Promise<BerthArchives> | undefined;
  const get = () => (archives ??= import("./archives.js").then((m) => m.imageArchives(images)));
  return {
    load: async (source, signal) => (await get()).load(source, signal),
    save: async (refs, format, out, signal) => (await get()).save(refs, format, out, signal),
    importRootfs: async (source, opts, signal) => (await get()).importRootfs(source, opts, signal),
  };
}

/** The part of images/service.ts ImageService this service uses. */
export interface BerthImages {
  pull(
    ref: string,
    auth?: AuthConfig,
    opts?: {
      onProgress?: (p: PullProgress) => void;
      platform?: ReturnType<typeof parsePlatform>;
      signal?: AbortSignal;
    },
  ): Promise<ImageRecord>;
  list(): Promise<ImageRecord[]>;
  fsUsage(): Promise<FsUsage>;
}

/** Static facts about the daemon for Info (everything but live counts and usage). */
export type DaemonSummary = Omit<InfoResponse, "images" | "content" | "snapshots">;

export interface BerthServiceDeps {
  log: Logger;
  summary: () => DaemonSummary;
  images?: BerthImages;
  archives?: BerthArchives;
}

/** Progress events for one layer are sent at most this often; phase changes always go out. */
const PROGRESS_INTERVAL_MS = 100;
/** Archive bytes per streamed message (well under the 16 MiB message limit). */
const CHUNK = 1024 * 1024;

const service = "berth.v1.Berth";

function need<T>(what: T | undefined, method: string, missing: string): T {
  if (!what) throw new UnimplementedError(`${service}/${method} is not available: this berthd has no ${missing}`);
  return what;
}

/** The bytes of a client stream of {data} messages, as a Readable; `first` receives message 0. */
function incoming<M extends { data: Buffer }>(
  call: grpc.ServerReadableStream<M, unknown>,
  first?: (m: M) => void,
): Readable {
  const out = new PassThrough({ highWaterMark: 4 * CHUNK });
  let n = 0;
  call.on("data", (m: M) => {
    if (n++ === 0) first?.(m);
    if (m.data.length > 0 && !out.write(m.data)) {
      call.pause();
      out.once("drain", () => call.resume());
    }
  });
  call.once("end", () => out.end());
  call.once("error", (err) => out.destroy(err));
  return out;
}

export function authFrom(req: PullImageRequest): AuthConfig | undefined {
  if (!req.username && !req.password && !req.auth) return undefined;
  return { username: req.username || undefined, password: req.password || undefined, auth: req.auth || undefined };
}

/** The handlers of berth.v1.Berth (ListTraces is the observability module's). */
export function berthHandlers(deps: BerthServiceDeps): Partial<ServiceHandlers<BerthServer>> {
  return {
    async pullImage(req, ctx) {
      const images = need(deps.images, "PullImage", "image service");
      if (!req.image) throw new InvalidArgumentError("PullImage: image reference is empty");
      const platform = req.platform ? parsePlatform(req.platform) : undefined;
      const last = new Map<string, { at: number; status: string }>();
      const onProgress = (p: PullProgress) => {
        if (ctx.signal.aborted || p.phase === "done") return;
        const digest = p.digest ?? "";
        const now = Date.now();
        const prev = last.get(digest);
        // Throttle byte counts per layer; a phase change or the final byte always goes out.
        if (prev && prev.status === p.phase && now - prev.at < PROGRESS_INTERVAL_MS && p.done !== p.total) return;
        last.set(digest, { at: now, status: p.phase });
        // Progress is advisory: never let a slow client stall the pull itself (no backpressure).
        ctx.call.write(
          PullImageProgress.fromPartial({
            status: p.phase,
            digest,
            total: BigInt(p.total ?? 0),
            done: BigInt(p.done ?? 0),
          }),
        );
      };
      const record = await images.pull(req.image, authFrom(req), { onProgress, platform, signal: ctx.signal });
      await ctx.send(
        PullImageProgress.fromPartial({
          status: "done",
          digest: record.id,
          imageId: record.id,
          imageRef: record.repoTags[0] ?? record.repoDigests[0] ?? record.id,
        }),
      );
    },

    async info() {
      const base = deps.summary();
      if (!deps.images) return InfoResponse.fromPartial(base);
      const [list, usage] = await Promise.all([deps.images.list(), deps.images.fsUsage()]);
      return InfoResponse.fromPartial({
        ...base,
        images: BigInt(list.length),
        content: {
          path: usage.content.path,
          usedBytes: BigInt(usage.content.size),
          inodesUsed: BigInt(usage.content.inodes),
        },
        snapshots: {
          path: usage.snapshots.path,
          usedBytes: BigInt(usage.snapshots.size),
          inodesUsed: BigInt(usage.snapshots.inodes),
        },
      });
    },

    async loadImages(requests, ctx) {
      const archives = need(deps.archives, "LoadImages", "image archive support yet");
      const images = await archives.load(incoming(requests), ctx.signal);
      return LoadImagesResponse.fromPartial({ images });
    },

    async saveImages(req, ctx) {
      const archives = need(deps.archives, "SaveImages", "image archive support yet");
      const { images, format } = req;
      if (images.length === 0) throw new InvalidArgumentError("SaveImages: name at least one image");
      if (format !== "" && format !== "docker" && format !== "oci") {
        throw new InvalidArgumentError(`SaveImages: format must be "docker" or "oci", not ${JSON.stringify(format)}`);
      }
      const sink = new Writable({
        highWaterMark: CHUNK,
        write(chunk: Buffer, _enc, cb) {
          const sends: Promise<void>[] = [];
          for (let off = 0; off < chunk.length; off += CHUNK) {
            sends.push(ctx.send(ArchiveChunk.fromPartial({ data: chunk.subarray(off, off + CHUNK) })));
          }
          Promise.all(sends).then(() => cb(), cb);
        },
      });
      await archives.save(images, format === "oci" ? "oci" : "docker", sink, ctx.signal);
    },

    async importImage(requests, ctx) {
      const archives = need(deps.archives, "ImportImage", "image archive support yet");
      let head: ImportImageRequest | undefined;
      const gotHead = new Promise<void>((resolve) => requests.once("data", () => resolve()));
      const source = incoming(requests, (m) => (head = m));
      const ended = new Promise<void>((resolve) => requests.once("end", () => resolve()));
      await Promise.race([gotHead, ended]);
      const r = await archives.importRootfs(
        source,
        { reference: head?.reference ?? "", changes: head?.changes ?? [] },
        ctx.signal,
      );
      return ImportImageResponse.fromPartial({ imageId: r.id, imageRef: r.ref });
    },
  };
}

/** The grpc-js implementation of berth.v1.Berth. */
export function berthServiceImplementation(deps: BerthServiceDeps): grpc.UntypedServiceImplementation {
  const log = deps.log.child({ component: "berth-service" });
  return implementService(BerthService, berthHandlers(deps), { log, label: "berth call", kind: "berth.v1" });
}

/** What the CRI server registers next to the CRI services (CriHandlers.extra). */
export function berthService(deps: BerthServiceDeps): {
  definition: grpc.ServiceDefinition;
  implementation: grpc.UntypedServiceImplementation;
} {
  return { definition: BerthService, implementation: berthServiceImplementation(deps) };
}
