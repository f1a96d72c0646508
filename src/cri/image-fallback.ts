// A minimal CRI ImageService over images/service.ts (PullImage, ImageStatus, ListImages,
// RemoveImage, ImageFsInfo), so pods can run before the image issue lands its handlers.
// The composition root spreads these BEFORE the image issue's handlers, so theirs win by name.
import { ImageFsInfoResponse, ImageStatusResponse, ListImagesResponse, PullImageResponse, type Image } from "../gen/cri/runtime/v1/api.js";
import type { ImageRecord, ImageService } from "../images/service.js";
import { InvalidArgumentError } from "../util/errors.js";
import type { ImageHandlers } from "./handlers.js";

function toCri(r: ImageRecord): Image {
  const user = r.config.User ?? "";
  const uid = /^\d+/.exec(user.split(":")[0] ?? "");
  return {
    id: r.id,
    repoTags: r.repoTags,
    repoDigests: r.repoDigests,
    size: BigInt(r.size),
    uid: uid ? { value: BigInt(uid[0]) } : undefined,
    username: uid ? "" : (user.split(":")[0] ?? ""),
    spec: { image: r.id, annotations: {}, userSpecifiedImage: "", runtimeHandler: "", imageRef: r.id },
    pinned: false,
  };
}

export function fallbackImageHandlers(images: ImageService): Partial<ImageHandlers> {
  return {
    async pullImage(req) {
      const ref = req.image?.image;
      if (!ref) throw new InvalidArgumentError("PullImage needs an image reference");
      const a = req.auth;
      const r = await images.pull(ref, a ? { username: a.username, password: a.password, auth: a.auth, serverAddress: a.serverAddress, identityToken: a.identityToken, registryToken: a.registryToken } : undefined);
      return PullImageResponse.fromPartial({ imageRef: r.id });
    },
    async imageStatus(req) {
      const r = await images.status(req.image?.image ?? "");
      return ImageStatusResponse.fromPartial({ image: r ? toCri(r) : undefined });
    },
    async listImages() {
      return ListImagesResponse.fromPartial({ images: (await images.list()).map(toCri) });
    },
    async removeImage(req) {
      await images.remove(req.image?.image ?? "").catch((err: unknown) => {
        if ((err as { kind?: string }).kind !== "NotFound") throw err;
      });
      return {};
    },
    async imageFsInfo() {
      const u = await images.fsUsage();
      const ts = BigInt(Date.now()) * 1_000_000n;
      return ImageFsInfoResponse.fromPartial({
        imageFilesystems: [{ timestamp: ts, fsId: { mountpoint: u.snapshots.path }, usedBytes: { value: BigInt(u.snapshots.size) }, inodesUsed: { value: BigInt(u.snapshots.inodes) } }],
      });
    },
  };
}
