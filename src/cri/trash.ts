// Removal in the background of the directories a removed container leaves (its bundle, its io
// dir, its snapshot's files), so RemoveContainer is metadata work only, as containerd's is
// (its shim unmounts the rootfs when the task is deleted and its garbage collector removes
// snapshot directories later).
//
// A directory goes in two steps: a rename out of the way (atomic, on the same file system:
// from then on no per-id path names it, and nothing of it is reachable by its id), then a
// recursive removal in the background. Every removal in flight is tracked: settled() waits
// for them (berthd's shutdown does, so tests and operators find a clean host after a stop).
// A crash in between leaves an entry in the trash dir, which empty() removes at the next
// start, before berthd serves. Nothing is ever removed through a mount: a directory with a
// mount below it (a bind-mounted host path would lose its files) is left and logged.
import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, renameSync } from "node:fs";
import { readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "../util/log.js";

export class Trash {
  /** Paths waiting for the worker; it takes them in batches (one mountinfo read per batch). */
  private readonly queue: string[] = [];
  private worker: Promise<void> | undefined;
  private made = false;

  /** `dir`: the trash directory, on the same file system as everything put in it. */
  constructor(
    readonly dir: string,
    private readonly log: Logger,
  ) {}

  /**
   * Moves `path` into the trash at once and removes it in the background; false when there
   * is no such path. Callers unmount what is below it first.
   */
  put(path: string): boolean {
    if (!this.made) {
      mkdirSync(this.dir, { recursive: true, mode: 0o700 });
      this.made = true;
    }
    const to = join(this.dir, `${Date.now().toString(36)}-${randomBytes(6).toString("hex")}`);
    try {
      renameSync(path, to);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
      throw err;
    }
    this.removeLater(to);
    return true;
  }

  /** Removes `path` (already out of the way: renamed by its owner) in the background, tracked. */
  removeLater(path: string): void {
    this.queue.push(path);
    this.worker ??= this.work();
  }

  /** No removal queued or in flight. */
  get idle(): boolean {
    return this.worker === undefined;
  }

  /** Resolves when every removal started so far (and any started meanwhile) has ended. */
  async settled(): Promise<void> {
    while (this.worker) await this.worker;
  }

  private async work(): Promise<void> {
    // After the current turn of the event loop: the RPC that queued these answers first.
    await new Promise((resolve) => setImmediate(resolve));
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0);
      const mounts = mountPoints();
      await Promise.all(
        batch.map((path) =>
          this.remove(path, mounts).catch((err: unknown) =>
            this.log.warn(
              { err, path },
              "deleting a removed container's directory failed; berthd tries again at start",
            ),
          ),
        ),
      );
    }
    // No await between the loop's last check and this: nothing can be queued unseen.
    this.worker = undefined;
  }

  /** At start: removes whatever a previous berthd left in the trash; returns the entries removed. */
  async empty(): Promise<string[]> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw err;
    }
    const removed: string[] = [];
    const mounts = mountPoints();
    for (const n of names) {
      const path = join(this.dir, n);
      try {
        await this.remove(path, mounts);
        removed.push(path);
      } catch (err) {
        this.log.warn({ err, path }, "emptying the trash: an entry could not be removed; trying again next start");
      }
    }
    return removed;
  }

  private async remove(path: string, mounts: string[]): Promise<void> {
    const below = mountsBelow(path, mounts);
    if (below.length > 0) throw new Error(`${path} has mounts below it (${below.join(", ")}): not removed`);
    await rm(path, { recursive: true, force: true });
  }
}

/** Every mount point in berthd's mount namespace (mountinfo, octal escapes decoded). */
export function mountPoints(): string[] {
  const out: string[] = [];
  for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
    const mp = line.split(" ")[4];
    if (mp) out.push(mp.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))));
  }
  return out;
}

/** The mount points at or below `dir` (of `mounts`, default: berthd's now). */
export function mountsBelow(dir: string, mounts: string[] = mountPoints()): string[] {
  const base = dir.replace(/\/+$/, "");
  return mounts.filter((m) => m === base || m.startsWith(`${base}/`));
}
