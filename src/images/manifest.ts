// Facts of the image format the service checks and derives (image-spec manifest.md,
// config.md): a manifest it can unpack, the chain IDs of its layers, the repository of a name.
import { InvalidArgumentError } from "../util/errors.js";
import { sha256Digest } from "./content-store.js";
import type { ManifestJson } from "./mediatypes.js";

/** chainID(L0) = diffID(L0); chainID(Ln) = sha256(chainID(Ln-1) + " " + diffID(Ln)) (image-spec config.md). */
export function chainIds(diffIds: string[]): string[] {
  const out: string[] = [];
  for (const d of diffIds) out.push(out.length === 0 ? d : sha256Digest(`${out[out.length - 1]} ${d}`));
  return out;
}

const layerTypes =
  /^application\/vnd\.(oci\.image\.layer\.(nondistributable\.)?v1\.tar(\+gzip|\+zstd)?|docker\.image\.rootfs\.(foreign\.)?diff\.tar(\.gzip)?)$/;

/** "repo" of a stored name "repo:tag" or "repo@digest". */
export function repoOf(name: string): string {
  const at = name.indexOf("@");
  if (at >= 0) return name.slice(0, at);
  const colon = name.lastIndexOf(":");
  return colon > name.lastIndexOf("/") ? name.slice(0, colon) : name;
}

/** A manifest berth can unpack: JSON with a config and layers of known media types. */
export function parseManifest(body: Buffer, name: string): ManifestJson {
  let m: ManifestJson;
  try {
    m = JSON.parse(body.toString("utf8")) as ManifestJson;
  } catch {
    throw new InvalidArgumentError(`${name}: manifest is not valid JSON`);
  }
  if (!m.config?.digest || !Array.isArray(m.layers))
    throw new InvalidArgumentError(`${name}: manifest lacks config or layers`);
  for (const l of m.layers) {
    if (!layerTypes.test(l.mediaType)) {
      throw new InvalidArgumentError(`${name}: unsupported layer media type ${JSON.stringify(l.mediaType)}`);
    }
  }
  return m;
}
