// Image archives for the CLI (berth load / save / import): BerthArchives on top of
// images/archive.ts, and the Dockerfile-style --change list `berth import` applies.
import type { Readable, Writable } from "node:stream";
import { exportArchive, importArchive, importRootfs } from "../images/archive.js";
import type { ImageRuntimeConfig } from "../images/mediatypes.js";
import type { ImageService } from "../images/service.js";
import { InvalidArgumentError, NotFoundError } from "../util/errors.js";

/** Image archive import/export (docker-archive, OCI layout, plain rootfs tarballs). */
export interface BerthArchives {
  /** Reads a `docker save` archive or an OCI layout tar; resolves to the names (or ids) loaded. */
  load(source: Readable, signal: AbortSignal): Promise<string[]>;
  /** Writes the images as a tar ("docker" archive or "oci" layout) to `out`, then ends it. */
  save(images: string[], format: "docker" | "oci", out: Writable, signal: AbortSignal): Promise<void>;
  /** Makes a single-layer image from a filesystem tarball. */
  importRootfs(
    source: Readable,
    opts: { reference: string; changes: string[] },
    signal: AbortSignal,
  ): Promise<{ id: string; ref: string }>;
}

/** A Dockerfile-style instruction list (`docker import --change`) applied to an empty config. */
export function configFromChanges(changes: string[]): ImageRuntimeConfig {
  const config: ImageRuntimeConfig = {};
  const argv = (rest: string): string[] => {
    if (rest.startsWith("[")) {
      const v = JSON.parse(rest) as unknown;
      if (!Array.isArray(v) || !v.every((x) => typeof x === "string"))
        throw new InvalidArgumentError(`--change: ${rest} is not a JSON string array`);
      return v;
    }
    return ["/bin/sh", "-c", rest];
  };
  for (const change of changes) {
    const m = /^\s*([A-Za-z]+)\s+(.*)$/s.exec(change);
    if (!m) throw new InvalidArgumentError(`--change ${JSON.stringify(change)}: expected INSTRUCTION ARGUMENTS`);
    const [, instr, rest] = m;
    try {
      switch (instr.toUpperCase()) {
        case "CMD":
          config.Cmd = argv(rest);
          break;
        case "ENTRYPOINT":
          config.Entrypoint = argv(rest);
          break;
        case "ENV": {
          const kv = rest.includes("=") ? rest.trim() : rest.trim().replace(/\s+/, "=");
          config.Env = [...(config.Env ?? []), kv];
          break;
        }
        case "WORKDIR":
          config.WorkingDir = rest.trim();
          break;
        case "USER":
          config.User = rest.trim();
          break;
        case "EXPOSE":
          for (const p of rest.trim().split(/\s+/))
            config.ExposedPorts = { ...config.ExposedPorts, [p.includes("/") ? p : `${p}/tcp`]: {} };
          break;
        case "LABEL": {
          const eq = rest.indexOf("=");
          if (eq < 1) throw new InvalidArgumentError(`--change LABEL ${rest}: expected KEY=VALUE`);
          config.Labels = {
            ...config.Labels,
            [rest.slice(0, eq).trim()]: rest
              .slice(eq + 1)
              .trim()
              .replace(/^"(.*)"$/, "$1"),
          };
          break;
        }
        case "STOPSIGNAL":
          config.StopSignal = rest.trim();
          break;
        default:
          throw new InvalidArgumentError(
            `--change: ${instr} is not supported (CMD, ENTRYPOINT, ENV, WORKDIR, USER, EXPOSE, LABEL, STOPSIGNAL are)`,
          );
      }
    } catch (err) {
      if (err instanceof SyntaxError)
        throw new InvalidArgumentError(`--change ${JSON.stringify(change)}: ${err.message}`);
      throw err;
    }
  }
  return config;
}

/** BerthArchives on top of images/archive.ts. One archive layout serves both formats: an OCI
 * layout that also carries Docker's manifest.json, so `docker load` takes it too. */
export function imageArchives(images: ImageService): BerthArchives {
  return {
    async load(source) {
      const records = await importArchive(images, source);
      return records.map((r) => r.repoTags[0] ?? r.id);
    },
    async save(refs, _format, out) {
      for (const ref of refs) {
        if (!(await images.status(ref))) throw new NotFoundError(`image ${JSON.stringify(ref)} not found`);
      }
      await exportArchive(images, refs, out);
    },
    async importRootfs(source, opts) {
      const ref = opts.reference || `import:${new Date().toISOString().replace(/[-:T]/g, "").slice(0, 14)}`;
      const r = await importRootfs(images, source, ref, { config: configFromChanges(opts.changes) });
      return { id: r.id, ref: r.repoTags[0] ?? ref };
    },
  };
}
