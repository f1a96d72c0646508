// The CRI ImageService (kubernetes/cri-api runtime.v1): a translation onto the image service
// in images/service.ts, with CRI's conventions where they differ from plain errors:
//   - ImageStatus of an image that is not there answers an empty response, not NotFound;
//   - RemoveImage of an image that is not there succeeds;
//   - PullImage answers the image id ("sha256:<config digest>"), which kubelet then uses as
//     the container's image ref.
// Credentials: the request's AuthConfig, else the registry's entry in the config
// (registry.auths, looked up inside the registry client).
// Cancellation: the call's signal goes to the pull; a cancelled caller leaves it, and the pull
// stops (removing its partial downloads) once no caller of that image is left.
// ImageSpec.runtime_handler is accepted on every image call and changes nothing, as in
// containerd 2.x without per-runtime image platforms: it only picks a snapshotter there when
// the handler has its own platform configured, and an unknown handler is not an error (the
// default applies). berth has one snapshotter and pulls for the host's platform.
import {
  ImageFsInfoResponse,
  ImageStatusResponse,
  ListImagesResponse,
  PullImageResponse,
  type AuthConfig as CriAuthConfig,
  type FilesystemUsage,
  type Image,
} from "../gen/cri/runtime/v1/api.js";
import type { AuthConfig } from "../images/auth.js";
import type { FsUsage, GcResult, ImageRecord } from "../images/service.js";
import type { ImageConfigJson } from "../images/mediatypes.js";
import { InvalidArgumentError } from "../util/errors.js";
import type { Logger } from "../util/log.js";
import type { ImageHandlers } from "./handlers.js";
import { NO_INFO } from "./context.js";

/** The part of images/service.ts ImageService the CRI handlers use. */
export interface CriImages {
  pull(ref: string, auth?: AuthConfig, opts?: { signal?: AbortSignal }): Promise<ImageRecord>;
  status(ref: string): Promise<ImageRecord | undefined>;
  list(filter?: { ref?: string }): Promise<ImageRecord[]>;
  imageConfig(imageId: string): Promise<ImageConfigJson>;
  remove(ref: string): Promise<{ imageId: string; imageRemoved: boolean }>;
  fsUsage(): Promise<FsUsage>;
  /** Background garbage collection after an image is gone (blobs and snapshots nothing uses). */
  requestGc(): Promise<GcResult | undefined>;
  /** Whether a collection requested now would start at once (no pull holds its lock). */
  readonly gcFree?: boolean;
  /** Changes whenever an image record does; undefined: nothing derived from them is kept. */
  readonly generation?: number;
  /** The image id `ref` names (as status() resolves it), or undefined; throws as status() does. */
  resolveId?(ref: string): string | undefined;
}

export interface ImageServiceDeps {
  images: CriImages;
  log?: Logger;
}

/** CRI AuthConfig -> the registry client's; undefined when it carries nothing. */
export function authFromCri(a: CriAuthConfig | undefined): AuthConfig | undefined {
  if (!a) return undefined;
  const out: AuthConfig = {
    username: a.username || undefined,
    password: a.password || undefined,
    auth: a.auth || undefined,
    serverAddress: a.serverAddress || undefined,
    identityToken: a.identityToken || undefined,
    registryToken: a.registryToken || undefined,
  };
  return out.username || out.auth || out.identityToken || out.registryToken ? out : undefined;
}

/**
 * uid or username from the image config's User ("uid", "uid:gid", "name", "name:group"),
 * as containerd reports it: a numeric user part is a uid, anything else a name.
 */
export function userOf(user: string | undefined): { uid?: bigint; username: string } {
  const u = (user ?? "").split(":")[0];
  if (u === "") return { username: "" };
  if (/^\d+$/.test(u)) return { uid: BigInt(u), username: "" };
  return { username: u };
}

export function toCriImage(r: ImageRecord): Image {
  const { uid, username } = userOf(r.config.User);
  return {
    id: r.id,
    repoTags: r.repoTags,
    repoDigests: r.repoDigests,
    size: BigInt(r.size),
    uid: uid === undefined ? undefined : { value: uid },
    username,
    spec: { image: r.id, annotations: {}, userSpecifiedImage: "", runtimeHandler: "", imageRef: r.id },
    pinned: false,
  };
}

function usageEntry(ts: bigint, mountpoint: string, bytes: number, inodes: number): FilesystemUsage {
  return {
    timestamp: ts,
    fsId: { mountpoint },
    usedBytes: { value: BigInt(bytes) },
    inodesUsed: { value: BigInt(inodes) },
  };
}

/**
 * Each image's Image message, kept while the image records stay as they were: ImageStatus and
 * ListImages then hand out the same object on every poll, and the encoder keeps its bytes by
 * the object (response-encoder.ts). `generation` is the records' generation from before the
 * record was read: a record read across a change is answered but not kept.
 */
class KeptImages {
  private generation: number | undefined;
  private kept = new Map<string, Image>();
  /** The whole list, in the records' order, when it was read within the kept generation. */
  private all: Image[] | undefined;

  constructor(private readonly images: CriImages) {}

  /** The kept messages of the current generation (emptied first when the records changed). */
  private current(generation: number | undefined): Map<string, Image> | undefined {
    if (generation === undefined || generation !== this.images.generation) return undefined;
    if (generation !== this.generation) {
      this.generation = generation;
      this.kept = new Map();
      this.all = undefined;
    }
    return this.kept;
  }

  of(r: ImageRecord, generation: number | undefined): Image {
    const kept = this.current(generation);
    if (!kept) return toCriImage(r);
    let image = kept.get(r.id);
    if (!image) {
      image = toCriImage(r);
      kept.set(r.id, image);
    }
    return image;
  }

  /** Every image's message, kept as a list too when nothing changed while it was read. */
  list(records: ImageRecord[], generation: number | undefined): Image[] {
    const out = records.map((r) => this.of(r, generation));
    if (this.current(generation)) this.all = out;
    return out;
  }

  /** Without reading any record: the kept message of image `id`, or the kept list, if current. */
  peek(id: string): Image | undefined {
    return this.current(this.images.generation)?.get(id);
  }

  peekList(): Image[] | undefined {
    return this.current(this.images.generation) ? this.all : undefined;
  }
}

export function imageServiceHandlers(deps: ImageServiceDeps): Partial<ImageHandlers> {
  const { images } = deps;
  const kept = new KeptImages(images);
  const refOf = (spec: { image: string } | undefined, method: string): string => {
    const ref = spec?.image?.trim() ?? "";
    if (!ref) throw new InvalidArgumentError(`${method}: image.image must name an image (reference, id or digest)`);
    return ref;
  };
  return {
    async pullImage(req, ctx) {
      // sandbox_config is for runtime-specific pulls (e.g. per-pod platform); berth pulls for the host.
      const ref = refOf(req.image, "PullImage");
      // Logged as the call starts (as containerd does): the pull it starts or joins is
      // registered before anything else of this process runs.
      ctx.log.debug({ image: ref }, "pulling image");
      const record = await images.pull(ref, authFromCri(req.auth), { signal: ctx.signal });
      return PullImageResponse.fromPartial({ imageRef: record.id });
    },

    async listImages(req) {
      const ref = req.filter?.image?.image?.trim();
      // kubelet's poll (no filter) while no image changed: the kept list, no record read
      const all = ref ? undefined : kept.peekList();
      if (all) return { images: all } satisfies ListImagesResponse;
      const generation = images.generation;
      const list = await images.list(ref ? { ref } : {});
      // toCriImage builds complete messages: no fromPartial deep copy (kubelet polls this).
      const r: ListImagesResponse = {
        images: ref ? list.map((record) => kept.of(record, generation)) : kept.list(list, generation),
      };
      return r;
    },

    async imageStatus(req) {
      const ref = refOf(req.image, "ImageStatus");
      // kubelet's poll while no image changed: the kept message of the image the reference
      // resolves to (resolveId keeps its answers per generation too), no record read
      const id = req.verbose ? undefined : images.resolveId?.(ref);
      const known = id === undefined ? undefined : kept.peek(id);
      if (known) return { image: known, info: NO_INFO } satisfies ImageStatusResponse;
      const generation = images.generation;
      const record = await images.status(ref);
      // CRI: an absent image is an empty response, so kubelet knows to pull it.
      if (!record) return ImageStatusResponse.fromPartial({});
      const info: Record<string, string> = {};
      if (req.verbose) {
        // containerd's verbose info: {"chainID", "imageSpec"} under the key "info".
        const imageSpec = await images.imageConfig(record.id);
        info.info = JSON.stringify({
          chainID: record.chainId,
          imageSpec,
          manifestDigest: record.manifestDigest,
          snapshotter: record.snapshotter,
          labels: record.labels,
        });
      }
      const r: ImageStatusResponse = { image: kept.of(record, generation), info };
      return r;
    },

    async removeImage(req) {
      let result: { imageRemoved: boolean } | undefined;
      try {
        result = await images.remove(refOf(req.image, "RemoveImage"));
      } catch (err) {
        // CRI: removing an image that is not there succeeds.
        if ((err as { kind?: string }).kind !== "NotFound") throw err;
      }
      // Like containerd, reclaim the image's blobs and snapshots once it is gone. When the
      // collection can start at once, the removal waits for it, as containerd's synchronous
      // delete does: a pull right after the removal then does not wait behind it for the lock
      // (3-12 ms per pull, measured). While a pull holds the lock (GC excludes pulls), it runs
      // in the background, so a removal never waits behind a long pull.
      if (result?.imageRemoved) {
        const now = images.gcFree === true;
        const gc = images.requestGc().then((r) => {
          if (r) deps.log?.debug({ blobs: r.removedBlobs.length, snapshots: r.removedSnapshots.length }, "image gc");
        });
        if (now) await gc;
      }
      return {};
    },

    async imageFsInfo() {
      const u = await images.fsUsage();
      const ts = BigInt(Date.now()) * 1_000_000n;
      // Image layers and their blobs live on the same filesystem under berth's root; the
      // containers' writable layers are snapshots there too, so both lists name it.
      const imageFs = usageEntry(
        ts,
        u.snapshots.path,
        u.snapshots.size + u.content.size,
        u.snapshots.inodes + u.content.inodes,
      );
      return ImageFsInfoResponse.fromPartial({ imageFilesystems: [imageFs], containerFilesystems: [imageFs] });
    },
  };
}
