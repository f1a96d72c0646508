// Durable records of the tasks the manager started, so a restarted berthd finds every shim
// again. A record holds only durable facts (where the shim is, what started it); whether
// the task runs and its exit code are asked from the shim (DESIGN.md principle 2).
import { mkdir, readdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";

import { writeFileAtomic, syncDir } from "../util/atomic-write.js";
import { InvalidArgumentError } from "../util/errors.js";

export interface ShimRecord {
  /** containerd namespace of the task (e.g. "k8s.io"). */
  namespace: string;
  /** Task (container) id. */
  id: string;
  /** The serving shim's ttrpc address as `start` printed it (e.g. unix:///run/containerd/s/...). */
  address: string;
  /** Runtime handler name the task was created with. */
  handler: string;
  /** Shim runtime type at creation (kept so recovery works even if the config changed). */
  runtimeType: string;
  /** Absolute shim binary path at creation. */
  shimBinary: string;
  /** OCI bundle directory (holds config.json; the shim's cwd). */
  bundle: string;
  /** Pod sandbox id, when the task belongs to a pod. */
  sandboxId?: string;
  /** ISO time the record was written. */
  createdAt: string;
}

/** Storage for ShimRecords, keyed by (namespace, id). The daemon backs it with the metadata store. */
export interface ShimRecordStore {
  put(record: ShimRecord): Promise<void>;
  get(namespace: string, id: string): Promise<ShimRecord | undefined>;
  delete(namespace: string, id: string): Promise<void>;
  list(): Promise<ShimRecord[]>;
}

/** containerd's identifier rule (identifiers.Validate): what may name a namespace or task. */
const IDENTIFIER = /^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$/;
const MAX_IDENTIFIER = 76;

export function validateIdentifier(kind: string, value: string): void {
  if (!value) throw new InvalidArgumentError(`${kind} must not be empty`);
  if (value.length > MAX_IDENTIFIER || !IDENTIFIER.test(value)) {
    throw new InvalidArgumentError(
      `${kind} ${JSON.stringify(value)} is invalid: use letters, digits and single '.', '_' or '-' separators, at most ${MAX_IDENTIFIER} characters`,
    );
  }
}

/**
 * One JSON file per record under `<dir>/<namespace>/<id>.json`, each written to a temporary
 * file, fsynced and renamed (mode 0600), so a crash leaves the old record or the new one.
 */
export class FileShimRecordStore implements ShimRecordStore {
  constructor(readonly dir: string) {}

  private file(namespace: string, id: string): string {
    validateIdentifier("namespace", namespace);
    validateIdentifier("task id", id);
    return join(this.dir, namespace, `${id}.json`);
  }

  async put(record: ShimRecord): Promise<void> {
    const path = this.file(record.namespace, record.id);
    const nsDir = join(this.dir, record.namespace);
    await mkdir(nsDir, { recursive: true, mode: 0o700 });
    await writeFileAtomic(path, JSON.stringify(record, null, 2) + "\n", 0o600);
  }

  async get(namespace: string, id: string): Promise<ShimRecord | undefined> {
    try {
      return JSON.parse(await readFile(this.file(namespace, id), "utf8")) as ShimRecord;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw err;
    }
  }

  async delete(namespace: string, id: string): Promise<void> {
    const path = this.file(namespace, id);
    await rm(path, { force: true });
    await syncDir(join(this.dir, namespace)).catch(() => {});
  }

  async list(): Promise<ShimRecord[]> {
    const out: ShimRecord[] = [];
    let namespaces: string[];
    try {
      namespaces = await readdir(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return out;
      throw err;
    }
    for (const ns of namespaces.sort()) {
      let files: string[];
      try {
        files = await readdir(join(this.dir, ns));
      } catch {
        continue;
      }
      for (const f of files.sort()) {
        if (!f.endsWith(".json") || f.startsWith(".")) continue;
        try {
          out.push(JSON.parse(await readFile(join(this.dir, ns, f), "utf8")) as ShimRecord);
        } catch {
          // A torn file cannot exist (rename is atomic); skip anything else that is not ours.
        }
      }
    }
    return out;
  }
}
