// Image volumes (KEP-4639): a CRI Mount that names an image instead of a host path mounts
// that image's file system, read-only, at container_path (or only its image_sub_path). For
// each such mount berthd takes a read-only view snapshot of the (already pulled) image,
// mounts it under the container's bundle, and hands the OCI runtime a plain read-only bind
// mount of it, so every shim sees an ordinary bundle. Removing the container unmounts and
// removes the views. The views are active snapshots, so image GC keeps their layers.
import { existsSync, readdirSync, realpathSync, statSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join, posix, sep } from "node:path";
import type { Mount } from "../gen/cri/runtime/v1/api.js";
import type { ImageService } from "../images/service.js";
import { mountAll, unmountAll } from "../snapshots/mount.js";
import { InvalidArgumentError, NotFoundError } from "../util/errors.js";

/** What image volumes need of the image service. */
export type VolumeImages = Pick<ImageService, "resolveId" | "prepareRootfs" | "removeRootfs">;

const DIR = "image-volumes";

/** The snapshot key of a container's n-th image volume. */
const keyOf = (containerId: string, n: string) => `${containerId}-image-volume-${n}`;

/** The directory inside `root` that `subPath` names, refusing a path or symlink that leads out of it. */
function subPathIn(root: string, subPath: string, where: string): string {
  if (!subPath) return root;
  const clean = posix.normalize(subPath);
  if (posix.isAbsolute(clean) || clean === ".." || clean.startsWith("../")) {
    throw new InvalidArgumentError(
      `image volume at ${where}: image_sub_path ${JSON.stringify(subPath)} must stay inside the image`,
    );
  }
  let real: string;
  try {
    statSync(join(root, clean));
    real = realpathSync(join(root, clean));
  } catch {
    throw new InvalidArgumentError(
      `image volume at ${where}: image_sub_path ${JSON.stringify(subPath)} does not exist in the image`,
    );
  }
  if (real !== root && !real.startsWith(root + sep)) {
    throw new InvalidArgumentError(
      `image volume at ${where}: image_sub_path ${JSON.stringify(subPath)} leads out of the image`,
    );
  }
  return real;
}

/**
 * Mounts the image volumes among `mounts` under `bundle` and returns the mounts with each of
 * them turned into a read-only bind mount of its view. Each step pushes its undo onto `undo`.
 */
export async function prepareImageVolumes(
  images: VolumeImages,
  containerId: string,
  bundle: string,
  mounts: Mount[],
  undo: (() => unknown)[],
): Promise<Mount[]> {
  const out: Mount[] = [];
  for (const [i, m] of mounts.entries()) {
    if (!m.image?.image) {
      out.push(m);
      continue;
    }
    const where = m.containerPath;
    if (!m.readonly) throw new InvalidArgumentError(`image volume at ${where} must be read-only`);
    const imageId = images.resolveId(m.image.image);
    if (!imageId)
      throw new NotFoundError(
        `image volume at ${where}: image ${JSON.stringify(m.image.image)} not found; pull it first`,
      );
    const dir = join(bundle, DIR, String(i));
    // 0711: the processes of a pod with a user namespace (unprivileged host ids) must pass it.
    await mkdir(dir, { recursive: true, mode: 0o711 });
    const key = keyOf(containerId, String(i));
    const view = await images.prepareRootfs(imageId, key, {
      readonly: true,
      labels: { "berth.io/container": containerId },
    });
    undo.push(() => images.removeRootfs(key));
    mountAll(view, dir);
    undo.push(() => unmountAll(dir));
    out.push({
      ...m,
      hostPath: subPathIn(realpathSync(dir), m.imageSubPath, where),
      image: undefined,
      imageSubPath: "",
      // Not idmapped (as containerd): overlayfs, which a view of several layers is, cannot be,
      // and a read-only image needs no owner; its files show as the overflow id inside a pod
      // with a user namespace, readable as the image made them.
      uidMappings: [],
      gidMappings: [],
    });
  }
  return out;
}

/** Unmounts and removes a container's image volumes (idempotent). */
export async function removeImageVolumes(images: VolumeImages, containerId: string, bundle: string): Promise<void> {
  const root = join(bundle, DIR);
  if (!existsSync(root)) return;
  for (const n of readdirSync(root)) {
    unmountAll(join(root, n));
    await images.removeRootfs(keyOf(containerId, n));
  }
}

/** The image the status of an image volume names: the resolved image id as image_ref. */
export function imageVolumeStatus(images: Pick<ImageService, "resolveId">, mounts: Mount[]): Mount[] {
  return mounts.map((m) =>
    m.image?.image ? { ...m, image: { ...m.image, imageRef: images.resolveId(m.image.image) ?? "" } } : m,
  );
}
