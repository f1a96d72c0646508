// berth's version, from package.json, found by walking up from this module (src/util in
// development, dist/src/util when built) so it is right in both layouts. Shared by the
// daemon and the CLI.

import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

function findVersion(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as { name?: string; version?: string };
      if (pkg.name === "berth" && pkg.version) return pkg.version;
    } catch {
      // not here; keep walking up
    }
    const up = dirname(dir);
    if (up === dir) return "0.0.0-unknown";
    dir = up;
  }
}

export const BERTH_VERSION = findVersion();
