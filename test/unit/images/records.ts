// An image record as the image service answers it, for unit tests of what reads records.
import type { ImageRecord } from "../../../src/images/service.js";

export const imageRecord = (id: string, tags: string[]): ImageRecord => ({
  id,
  repoTags: tags,
  repoDigests: [],
  size: 1,
  manifestDigest: "sha256:m",
  chainId: "",
  snapshotter: "overlayfs",
  labels: {},
  createdAt: 0,
  os: "linux",
  architecture: "amd64",
  config: {},
});
