// Platform matching for image indexes: pick the manifest for this host (os, architecture,
// variant), normalising the spellings uname and Go use (x86_64 = amd64, aarch64 = arm64).
import type { Descriptor, Platform } from "./mediatypes.js";

export function normalizeArch(arch: string, variant?: string): { architecture: string; variant?: string } {
  const a = arch.toLowerCase();
  switch (a) {
    case "x86_64":
    case "x86-64":
    case "x64":
    case "amd64":
      return { architecture: "amd64", variant: variant && variant !== "v1" ? variant : undefined };
    case "aarch64":
    case "arm64":
      // v8 is arm64's baseline: the same as no variant
      return { architecture: "arm64", variant: variant && variant !== "v8" ? variant : undefined };
    case "armhf":
      return { architecture: "arm", variant: "v7" };
    case "armel":
      return { architecture: "arm", variant: "v6" };
    case "arm":
      return { architecture: "arm", variant: variant ?? "v7" };
    case "i386":
    case "i686":
    case "ia32":
    case "x86":
      return { architecture: "386", variant };
    case "ppc64":
    case "ppc64le":
      return { architecture: "ppc64le", variant };
    default:
      return { architecture: a, variant };
  }
}

/** The platform of this process's host. */
export function hostPlatform(): Platform {
  const armVersion = (process.config.variables as { arm_version?: string }).arm_version;
  const { architecture, variant } = normalizeArch(process.arch, armVersion ? `v${armVersion}` : undefined);
  return variant ? { os: "linux", architecture, variant } : { os: "linux", architecture };
}

export function normalizePlatform(p: Platform): Platform {
  const { architecture, variant } = normalizeArch(p.architecture, p.variant);
  return variant ? { os: p.os.toLowerCase(), architecture, variant } : { os: p.os.toLowerCase(), architecture };
}

/** Parses "linux/arm64/v8" (os/arch[/variant]). */
export function parsePlatform(s: string): Platform {
  const [os, arch, variant] = s.split("/");
  return normalizePlatform({ os, architecture: arch ?? "", variant });
}

export function formatPlatform(p: Platform): string {
  return [p.os, p.architecture, p.variant].filter(Boolean).join("/");
}

/**
 * Picks the best manifest for `want` from an index: same os and architecture, and the
 * variant equal (best) or, when the entry names none, accepted as a fallback. Arm
 * variants are backward compatible: a v7 host runs v6 images (lower scores). Entries
 * without a platform (attestations, etc.) never match.
 */
export function selectManifest(manifests: Descriptor[], want: Platform): Descriptor | undefined {
  const w = normalizePlatform(want);
  let best: { d: Descriptor; score: number } | undefined;
  for (const d of manifests) {
    if (!d.platform) continue;
    const p = normalizePlatform(d.platform);
    if (p.os !== w.os || p.architecture !== w.architecture) continue;
    let score: number;
    if (p.variant === w.variant) score = 100;
    else if (!p.variant) score = 50;
    else if (w.architecture === "arm" && w.variant && p.variant < w.variant)
      score = 40 - (w.variant.charCodeAt(1) - p.variant.charCodeAt(1));
    else continue;
    if (!best || score > best.score) best = { d, score };
  }
  return best?.d;
}
