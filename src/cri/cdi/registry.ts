// The CDI spec registry: every *.json / *.yaml spec file in the configured directories, read
// afresh for each container that asks for a device (vendors drop and remove files at any time,
// and a create is rare next to a file read). Directory priority is the reference library's:
// a later directory (/var/run/cdi, generated) overrides an earlier one (/etc/cdi, static); the
// same device from two files of equal priority is ambiguous. A broken spec file fails every
// request, naming the file, rather than letting its devices vanish silently.
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { FailedPreconditionError, InvalidArgumentError } from "../../util/errors.js";
import { CdiSpecError, parseCdiSpec, type CdiContainerEdits, type CdiDevice, type CdiSpec } from "./spec.js";

export const DEFAULT_CDI_SPEC_DIRS = ["/etc/cdi", "/var/run/cdi"];

export interface CdiSpecFile {
  file: string;
  priority: number;
  spec: CdiSpec;
}

export interface ResolvedDevice {
  /** The fully qualified name, vendor.com/class=name. */
  name: string;
  device: CdiDevice;
  /** The device's spec file, whose spec-level edits go along. */
  from: CdiSpecFile;
}

/** Reads every spec file of `dirs` (missing dirs are empty); a broken file throws naming it. */
export async function loadCdiSpecs(dirs: string[]): Promise<CdiSpecFile[]> {
  const out: CdiSpecFile[] = [];
  for (const [priority, dir] of dirs.entries()) {
    let names: string[];
    try {
      names = (await readdir(dir)).filter((n) => /\.(json|ya?ml)$/.test(n)).sort();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") continue;
      throw new FailedPreconditionError(`CDI spec directory ${dir}: ${(err as Error).message}`);
    }
    for (const n of names) {
      const file = join(dir, n);
      let text: string;
      try {
        text = await readFile(file, "utf8");
      } catch (err) {
        // Removed between readdir and read: a vendor replacing its file.
        if ((err as NodeJS.ErrnoException).code === "ENOENT") continue;
        throw new FailedPreconditionError(`CDI spec file ${file}: ${(err as Error).message}`);
      }
      try {
        out.push({ file, priority, spec: parseCdiSpec(text, file) });
      } catch (err) {
        if (err instanceof CdiSpecError)
          throw new FailedPreconditionError(`CDI spec file ${file} is invalid: ${err.message}`);
        throw err;
      }
    }
  }
  return out;
}

/** "vendor.com/class=name" -> its parts; undefined when it is not a qualified device name. */
export function parseQualifiedName(name: string): { kind: string; device: string } | undefined {
  const m = /^([^/=\s]+\/[^/=\s]+)=([^=\s]+)$/.exec(name);
  return m ? { kind: m[1]!, device: m[2]! } : undefined;
}

/** Finds each requested device; unknown, unqualified or ambiguous names are INVALID_ARGUMENT. */
export function resolveCdiDevices(specs: CdiSpecFile[], requested: string[]): ResolvedDevice[] {
  const out: ResolvedDevice[] = [];
  for (const name of requested) {
    const q = parseQualifiedName(name);
    if (!q)
      throw new InvalidArgumentError(
        `CDI device ${JSON.stringify(name)} is not a qualified name (vendor.com/class=name)`,
      );
    let best: { device: CdiDevice; from: CdiSpecFile }[] = [];
    for (const f of specs) {
      if (f.spec.kind !== q.kind) continue;
      const device = f.spec.devices.find((d) => d.name === q.device);
      if (!device) continue;
      if (best.length === 0 || f.priority > best[0]!.from.priority) best = [{ device, from: f }];
      else if (f.priority === best[0]!.from.priority) best.push({ device, from: f });
    }
    if (best.length === 0) throw new InvalidArgumentError(`unknown CDI device ${JSON.stringify(name)}`);
    if (best.length > 1)
      throw new InvalidArgumentError(
        `CDI device ${JSON.stringify(name)} is ambiguous: defined in ${best.map((b) => b.from.file).join(" and ")}`,
      );
    out.push({ name, device: best[0]!.device, from: best[0]!.from });
  }
  return out;
}

/**
 * The edits for a set of devices, in the order they apply: each spec file's spec-level edits
 * once (before its first device's), then every device's own.
 */
export function editsFor(devices: ResolvedDevice[]): { source: string; edits: CdiContainerEdits }[] {
  const seen = new Set<CdiSpecFile>();
  const out: { source: string; edits: CdiContainerEdits }[] = [];
  for (const d of devices) {
    if (!seen.has(d.from)) {
      seen.add(d.from);
      if (d.from.spec.containerEdits) out.push({ source: d.from.file, edits: d.from.spec.containerEdits });
    }
    out.push({ source: d.name, edits: d.device.containerEdits });
  }
  return out;
}
