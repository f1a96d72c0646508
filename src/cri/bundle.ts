// The on-disk side of a CRI container or pod sandbox under berthd's state dir: its bundle
// (<state>/bundles/<id>: config.json and, for a container, the rootfs mount point), its io dir
// (<state>/io/<id>: the stdio fifos) and the pod's shared files dir (<state>/pods/<id>).
//
// This module is the only one that touches config.json: specs are written atomically (a
// temporary file renamed over it), so a crash of berthd leaves either the old spec or the whole
// new one, and read through a cache (ContainerStatus, exec, stats and UpdateContainerResources
// would otherwise parse the same file again and again). Not fsynced: the state dir is runtime
// state (tmpfs under /run), which a power loss takes away with every task it describes, as
// containerd writes its bundles' config.json.
import { mkdirSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { type Spec, readSpecFile } from "../oci/spec.js";
import { writeFileAtomicSync } from "../util/atomic-write.js";
import type { Trash } from "./trash.js";
import { type ContainerIoPaths, containerIoPaths } from "./io/container-logger.js";

export class Bundles {
  private readonly specs = new Map<string, Spec>();

  constructor(private readonly stateDir: string) {}

  dir(id: string): string {
    return join(this.stateDir, "bundles", id);
  }

  /** A container's rootfs mount point inside its bundle. */
  rootfs(id: string): string {
    return join(this.dir(id), "rootfs");
  }

  /** A pod's directory of shared files (hostname, hosts, resolv.conf, shm). */
  podDir(id: string): string {
    return join(this.stateDir, "pods", id);
  }

  /** The fifos of a container's processes. */
  io(id: string): ContainerIoPaths {
    return containerIoPaths(join(this.stateDir, "io"), id);
  }

  /** Creates the bundle dir (and, with `rootfs`, its rootfs mount point). */
  async create(id: string, opts: { rootfs: boolean }): Promise<void> {
    // Synchronous: two or three mkdirs cost less than a trip through libuv's thread pool.
    mkdirSync(opts.rootfs ? this.rootfs(id) : this.dir(id), { recursive: true, mode: 0o711 });
  }

  /**
   * Writes the bundle's config.json atomically (not durably: see above). The cache keeps
   * `spec` itself, not a copy: the caller hands it over and must not change it afterwards
   * (readers get copies).
   */
  writeSpec(id: string, spec: Spec): void {
    writeFileAtomicSync(join(this.dir(id), "config.json"), JSON.stringify(spec), 0o600, { durable: false });
    this.specs.set(id, spec);
  }

  /** The bundle's spec (a copy the caller may change); throws when there is none. */
  readSpec(id: string): Spec {
    let spec = this.specs.get(id);
    if (!spec) {
      spec = readSpecFile(this.dir(id));
      this.specs.set(id, spec);
    }
    return structuredClone(spec);
  }

  /** The bundle's spec, or undefined when there is no bundle (yet, or any more). */
  tryReadSpec(id: string): Spec | undefined {
    try {
      return this.readSpec(id);
    } catch {
      return undefined;
    }
  }

  /**
   * Moves the bundle and the io dir into `trash` at once (deleted there in the background);
   * whatever was mounted in the bundle must be unmounted first. Idempotent.
   */
  discard(id: string, trash: Trash): void {
    this.specs.delete(id);
    trash.put(this.dir(id));
    trash.put(this.io(id).dir);
  }

  /** Removes the bundle (its rootfs must be unmounted) and the io dir. Idempotent. */
  async remove(id: string): Promise<void> {
    this.specs.delete(id);
    await Promise.all([
      rm(this.dir(id), { recursive: true, force: true }),
      rm(this.io(id).dir, { recursive: true, force: true }),
    ]);
  }
}
