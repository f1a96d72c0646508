// Paths inside a layer's root, resolved without ever letting the kernel follow a symlink (the
// confinement rules are in unpack.ts's header): tar names cleaned to root-relative components,
// parents walked one lstat at a time, symlinks among them followed inside the root.
import { lstat, mkdir, readlink, rm } from "node:fs/promises";
import { join } from "node:path";
import { InvalidArgumentError } from "../util/errors.js";

const MAX_PATH = 4096;
const MAX_NAME = 255;
const MAX_LINK_HOPS = 40;

/** The error for a layer entry that breaks a rule: the layer is at fault. */
export function refuse(name: string, why: string): InvalidArgumentError {
  return new InvalidArgumentError(`layer entry ${JSON.stringify(name)}: ${why}`);
}

/** Cleans a tar name to root-relative components; refuses names that climb out or are too long. */
export function cleanName(name: string): string[] {
  if (Buffer.byteLength(name) > MAX_PATH) throw refuse(name.slice(0, 64) + "...", "name longer than PATH_MAX");
  if (name.includes("\0")) throw refuse(name, "name contains NUL");
  const out: string[] = [];
  for (const c of name.split("/")) {
    if (c === "" || c === ".") continue;
    if (c === "..") {
      if (out.length === 0) throw refuse(name, "path escapes the root");
      out.pop();
      continue;
    }
    if (Buffer.byteLength(c) > MAX_NAME) throw refuse(name.slice(0, 64) + "...", "component longer than NAME_MAX");
    out.push(c);
  }
  return out;
}

export async function lstatOrNull(p: string) {
  try {
    return await lstat(p);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw err;
  }
}

/** Resolves paths inside one root without ever letting the kernel follow a symlink. */
export class ConfinedRoot {
  /** parent components (joined) -> host path of that directory, known to be a real directory */
  private dirs = new Map<string, string>();

  constructor(readonly root: string) {}

  /** Forget cached directories (after anything was removed or replaced). */
  invalidate(): void {
    this.dirs.clear();
  }

  /**
   * The host path of the directory reached by `components`, following symlinks inside the
   * root; missing directories are created (0755, root-owned, as tar does) when `create`.
   */
  async dir(components: string[], name: string, create: boolean): Promise<string> {
    const key = components.join("/");
    const hit = this.dirs.get(key);
    if (hit !== undefined) return hit;
    const stack: string[] = [];
    const todo = [...components];
    let hops = 0;
    while (todo.length > 0) {
      const c = todo.shift()!;
      if (c === "" || c === ".") continue;
      if (c === "..") {
        stack.pop(); // clamps at the root
        continue;
      }
      const p = join(this.root, ...stack, c);
      const st = await lstatOrNull(p);
      if (st === null) {
        if (!create) throw refuse(name, `parent ${[...stack, c].join("/")} does not exist`);
        await mkdir(p, { mode: 0o755 });
        stack.push(c);
      } else if (st.isDirectory()) {
        stack.push(c);
      } else if (st.isSymbolicLink()) {
        if (++hops > MAX_LINK_HOPS) throw refuse(name, "too many levels of symbolic links");
        const target = await readlink(p);
        if (target.startsWith("/")) stack.length = 0;
        todo.unshift(...target.split("/"));
      } else {
        throw refuse(name, `parent ${[...stack, c].join("/")} is not a directory`);
      }
    }
    const host = join(this.root, ...stack);
    this.dirs.set(key, host);
    return host;
  }

  /**
   * Removes what is at host path `p` (never following it), and forgets the cached directories
   * when it did; keeps a directory when `keepDir`. Says whether it kept one.
   */
  async clear(p: string, keepDir = false): Promise<boolean> {
    const existing = await lstatOrNull(p);
    if (!existing) return false;
    if (keepDir && existing.isDirectory()) return true;
    await rm(p, { recursive: existing.isDirectory(), force: true });
    this.invalidate();
    return false;
  }

  /** Host path for entry `components` (the last component itself not followed). */
  async entry(components: string[], name: string, create = true): Promise<string> {
    if (components.length === 0) return this.root;
    const parent = await this.dir(components.slice(0, -1), name, create);
    return join(parent, components[components.length - 1]);
  }
}
