// ImageService handlers. None has landed yet: every method answers UNIMPLEMENTED through
// server.ts. The image issue replaces this with handlers backed by the image store, e.g.
//   export function imageServiceHandlers(deps: { images: ImageStore }): Partial<ImageHandlers> {
//     return { async listImages(req, ctx) { ... }, async pullImage(req, ctx) { ... } };
//   }
// and the composition root (daemon/compose.ts) passes its dependencies.

import type { ImageHandlers } from "./handlers.js";

// eslint-disable-next-line @typescript-eslint/no-empty-object-type -- filled in by the image issue
export type ImageServiceDeps = {};

export function imageServiceHandlers(_deps: ImageServiceDeps): Partial<ImageHandlers> {
  return {};
}
