// overlayfs snapshotter, laid out like containerd's: <root>/snapshots/<id>/fs is the layer's
// own files (the upperdir while active), <root>/snapshots/<id>/work the overlay workdir.
// Layers are applied straight into fs with overlay-style whiteouts, so nothing is mounted
// during unpack; a container's rootfs is one overlay mount of its parents' fs dirs.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type { Db } from "../metadata/db.js";
import type { SnapshotRow } from "../metadata/snapshots.js";
import { DirSnapshotter } from "./base.js";
import type { Mount, SnapshotKind } from "./types.js";

export class OverlaySnapshotter extends DirSnapshotter {
  readonly name = "overlayfs";
  readonly whiteouts = "overlay" as const;

  /** `root` is the snapshotter's own directory, e.g. <state>/snapshots/overlayfs. */
  constructor(db: Db, root: string) {
    super(db, root, "overlayfs");
  }

  // Two mkdirs, done synchronously: each is a few µs in the kernel, less than a trip through
  // libuv's thread pool (CreateContainer waits for them).
  protected async populate(dir: string, kind: SnapshotKind): Promise<void> {
    mkdirSync(join(dir, "fs"), { mode: 0o755 });
    if (kind === "active") mkdirSync(join(dir, "work"), { mode: 0o711 });
  }

  protected layerDir(dir: string): string {
    return join(dir, "fs");
  }

  protected mountsOf(row: SnapshotRow, parents: SnapshotRow[]): Mount[] {
    const dir = this.dirOf(row);
    const lower = parents.map((p) => join(this.dirOf(p), "fs"));
    if (row.kind === "active") {
      if (lower.length === 0) return [{ type: "bind", source: join(dir, "fs"), options: ["rbind", "rw"] }];
      return [
        {
          type: "overlay",
          source: "overlay",
          options: [`workdir=${join(dir, "work")}`, `upperdir=${join(dir, "fs")}`, `lowerdir=${lower.join(":")}`],
        },
      ];
    }
    // A view: overlay needs two lower dirs to be useful read-only; one layer is a plain read-only bind.
    if (lower.length === 0) return [{ type: "bind", source: join(dir, "fs"), options: ["rbind", "ro"] }];
    if (lower.length === 1) return [{ type: "bind", source: lower[0], options: ["rbind", "ro"] }];
    return [{ type: "overlay", source: "overlay", options: [`lowerdir=${lower.join(":")}`] }];
  }
}
