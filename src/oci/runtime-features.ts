// What each configured OCI runtime can do, for the runtime handler features that Status
// announces (kubelet and critest read them before asking for the feature). Asked once at
// start from the runtime's own `features` subcommand (runc 1.1+, OCI runtime-spec
// features.md); a runtime without it (runsc, older crun) or not installed announces nothing.

import { execFile } from "node:child_process";
import { release } from "node:os";

export interface HandlerFeatures {
  /** Mount.recursive_read_only works: the runtime knows the "rro" mount option and the kernel has mount_setattr(2). */
  recursiveReadOnlyMounts: boolean;
}

const NONE: HandlerFeatures = { recursiveReadOnlyMounts: false };

/** mount_setattr(2), which "rro" needs, came in Linux 5.12. */
export function kernelHasMountSetattr(kernelRelease: string = release()): boolean {
  const m = /^(\d+)\.(\d+)/.exec(kernelRelease);
  if (!m) return false;
  const [major, minor] = [Number(m[1]), Number(m[2])];
  return major > 5 || (major === 5 && minor >= 12);
}

/** Parses `RUNTIME features` output (JSON with a mountOptions list). */
export function parseRuntimeFeatures(json: string, kernelRelease?: string): HandlerFeatures {
  let doc: { mountOptions?: unknown };
  try {
    doc = JSON.parse(json) as { mountOptions?: unknown };
  } catch {
    return NONE;
  }
  const options = Array.isArray(doc.mountOptions) ? doc.mountOptions : [];
  return { recursiveReadOnlyMounts: options.includes("rro") && kernelHasMountSetattr(kernelRelease) };
}

/** Asks `binary features`; anything but a good answer within 10 s means no features. */
export function probeRuntimeFeatures(binary: string): Promise<HandlerFeatures> {
  return new Promise((resolve) => {
    execFile(binary, ["features"], { timeout: 10_000, maxBuffer: 1 << 20 }, (err, stdout) =>
      resolve(err ? NONE : parseRuntimeFeatures(stdout)),
    );
  });
}

/** The features of every handler (name -> its runtime binary), probed in parallel. */
export async function probeHandlerFeatures(binaries: Record<string, string>): Promise<Record<string, HandlerFeatures>> {
  const names = Object.keys(binaries);
  const features = await Promise.all(names.map((n) => probeRuntimeFeatures(binaries[n])));
  return Object.fromEntries(names.map((n, i) => [n, features[i]]));
}
