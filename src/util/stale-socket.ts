// A unix socket path a server is about to listen on: a file a dead server left there is
// removed, but a live server's socket, or a file that is no socket, is never touched.
import { lstat, unlink } from "node:fs/promises";
import net from "node:net";

import { AlreadyExistsError } from "./errors.js";

/**
 * Removes the socket file at `path` if no server answers on it. `what` names the socket in the
 * errors (e.g. "NRI socket"), which are AlreadyExistsError for a live socket or a non-socket.
 */
export async function removeStaleSocket(path: string, what: string): Promise<void> {
  const st = await lstat(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT") return undefined;
    throw err;
  });
  if (!st) return;
  if (!st.isSocket()) throw new AlreadyExistsError(`${what} ${path} exists and is not a socket`);
  const live = await new Promise<boolean>((resolve) => {
    const s = net.connect({ path });
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
  if (live) throw new AlreadyExistsError(`${what} ${path} is in use by another server`);
  await unlink(path).catch(() => {});
}
