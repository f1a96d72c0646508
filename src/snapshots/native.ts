// The plain-copy snapshotter, for hosts without overlayfs (or filesystems it cannot sit
// on): each snapshot is a full tree, a new one starts as a copy of its parent.
// The copy uses `cp -a --reflink=auto`: it preserves owners, modes, times, xattrs, devices
// and hard links and clones extents where the filesystem can; this is a fallback path,
// not a hot one, so one exec per snapshot is fine (DESIGN.md principle 7 is about hot paths).
import { execFile } from "node:child_process";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import type { Db } from "../metadata/db.js";
import type { SnapshotRow } from "../metadata/snapshots.js";
import { DirSnapshotter } from "./base.js";
import type { Mount, SnapshotKind } from "./types.js";

const run = promisify(execFile);

export class NativeSnapshotter extends DirSnapshotter {
  readonly name = "native";
  readonly whiteouts = "native" as const;

  constructor(db: Db, root: string) {
    super(db, root, "native");
  }

  protected async populate(dir: string, _kind: SnapshotKind, parents: SnapshotRow[]): Promise<void> {
    const fs = join(dir, "fs");
    if (parents.length === 0) {
      await mkdir(fs, { mode: 0o755 });
      return;
    }
    await run("cp", ["-a", "--reflink=auto", "--", join(this.dirOf(parents[0]), "fs"), fs]);
  }

  protected layerDir(dir: string): string {
    return join(dir, "fs");
  }

  protected mountsOf(row: SnapshotRow): Mount[] {
    return [
      { type: "bind", source: join(this.dirOf(row), "fs"), options: ["rbind", row.kind === "view" ? "ro" : "rw"] },
    ];
  }
}
