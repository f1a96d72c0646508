// Snapshotters by name (DESIGN.md principle 6), plus mount helpers.
import type { Db } from "../metadata/db.js";
import { InvalidArgumentError } from "../util/errors.js";
import { NativeSnapshotter } from "./native.js";
import { OverlaySnapshotter } from "./overlay.js";
import type { Snapshotter } from "./types.js";
import { join } from "node:path";

export * from "./types.js";
export { OverlaySnapshotter } from "./overlay.js";
export { NativeSnapshotter } from "./native.js";
export { mountAll, unmountAll } from "./mount.js";

/** Builds snapshotter `name` ("overlayfs" or "native") rooted at <stateRoot>/snapshots/<name>. */
export function createSnapshotter(name: string, db: Db, stateRoot: string): Snapshotter {
  switch (name) {
    case "overlayfs":
    case "overlay":
      return new OverlaySnapshotter(db, join(stateRoot, "snapshots", "overlayfs"));
    case "native":
      return new NativeSnapshotter(db, join(stateRoot, "snapshots", "native"));
    default:
      throw new InvalidArgumentError(`unknown snapshotter ${JSON.stringify(name)} (known: overlayfs, native)`);
  }
}
