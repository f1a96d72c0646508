// Creates berthd's directories with tight permissions. Root holds image layers and the
// metadata database: nobody but root reads it. An existing directory with looser bits than
// wanted is tightened, because a permissive root silently exposes every container's files.

import { chmodSync, mkdirSync, statSync } from "node:fs";
import type { Logger } from "../util/log.js";

export function ensurePrivateDir(path: string, mode: number, log: Logger): void {
  mkdirSync(path, { recursive: true, mode });
  const st = statSync(path);
  if (!st.isDirectory()) throw new Error(`${path} exists and is not a directory`);
  const current = st.mode & 0o7777;
  if (current !== mode) {
    // mkdir's mode is filtered by the umask, and an old directory may be looser: set it exactly.
    chmodSync(path, mode);
    if ((current & ~mode) !== 0) {
      log.info({ path, from: current.toString(8), to: mode.toString(8) }, "tightened directory permissions");
    }
  }
}
