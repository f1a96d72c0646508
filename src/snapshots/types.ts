// The snapshotter seam: layered root filesystems keyed like containerd's snapshotters.
// A committed snapshot is an unpacked image layer (key = its chain ID, so images share
// layers); an active snapshot is a container's writable layer on top of one; a view is a
// read-only one. Snapshotters are looked up by name (DESIGN.md principle 6).

/** A mount as the runtime passes it to the OCI runtime / mount(2): like containerd's mount.Mount. */
export interface Mount {
  /** "overlay" or "bind" */
  type: string;
  source: string;
  options: string[];
}

export type SnapshotKind = "committed" | "active" | "view";

export interface SnapshotInfo {
  key: string;
  /** key of the committed parent, if any */
  parent?: string;
  kind: SnapshotKind;
  labels: Record<string, string>;
  createdAt: number;
}

/** Disk usage as ImageFsInfo reports it. */
export interface Usage {
  /** bytes allocated (st_blocks * 512) */
  size: number;
  inodes: number;
}

/** A snapshot whose files are ready under a temporary name, not recorded yet. */
export interface StagedSnapshot {
  /**
   * Records it (synchronously, in one transaction of the metadata database: a savepoint when
   * the caller has one open, so the caller's own writes commit with it) and returns its mounts.
   */
  commit(): Mount[];
  /** Removes the temporary files after a failed commit, or instead of one. */
  discard(): Promise<void>;
}

export interface Snapshotter {
  readonly name: string;
  /**
   * How a layer's deletions must be written into applyDir(): "overlay" as overlayfs whiteouts
   * (0/0 char devices and trusted.overlay.opaque), "native" by deleting the files.
   */
  readonly whiteouts: "overlay" | "native";
  /** Throws NotFoundError. */
  stat(key: string): SnapshotInfo;
  exists(key: string): boolean;
  list(): SnapshotInfo[];
  /** Creates a writable snapshot on top of committed `parent`. AlreadyExistsError if `key` exists. */
  prepare(key: string, parent?: string, opts?: { labels?: Record<string, string> }): Promise<Mount[]>;
  /**
   * prepare() or view() in two steps, so that a caller's record can commit with the snapshot's
   * (see StagedSnapshot); AlreadyExistsError if `key` exists.
   */
  stage(
    kind: "active" | "view",
    key: string,
    parent: string | undefined,
    labels: Record<string, string>,
  ): Promise<StagedSnapshot>;
  /** Creates a read-only snapshot of committed `parent`. */
  view(key: string, parent?: string, opts?: { labels?: Record<string, string> }): Promise<Mount[]>;
  /** The mounts that assemble active or view snapshot `key`. */
  mounts(key: string): Mount[];
  /** Turns active snapshot `key` into committed snapshot `name` (AlreadyExistsError if taken). */
  commit(name: string, key: string, opts?: { labels?: Record<string, string> }): Promise<void>;
  /** Removes a snapshot; FailedPreconditionError while it has children. */
  remove(key: string): Promise<void>;
  /**
   * remove() without the wait for the files: the record goes and the directory is moved out of
   * the way (renamed, atomically with the record's deletion); returns where it now is, for the
   * caller to delete (cleanup() does at the next start otherwise). Errors as remove().
   */
  detach(key: string): string;
  /**
   * remove() in two steps for a caller whose own transaction deletes its record with the
   * snapshot's: the row is deleted now (a savepoint inside the caller's open transaction), and
   * the returned function, called once that transaction committed, moves the directory out of
   * the way and returns where it is now, for the caller to delete (undefined: no directory).
   * If the caller's transaction does not commit, row and directory both stay. Errors as remove().
   */
  forget(key: string): () => string | undefined;
  /** Usage of the snapshot's own layer (not its parents). */
  usage(key: string): Promise<Usage>;
  /** The directory a layer diff is applied into for active snapshot `key`, without mounting. */
  applyDir(key: string): string;
  /** Removes directories that no record names (left by a crash between steps). */
  cleanup(): Promise<void>;
}
