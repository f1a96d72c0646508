// Pod and container ids: 64 hex characters like containerd's, and short-id resolution
// (crictl and humans pass unique prefixes; kubelet always passes full ids).
import { randomBytes } from "node:crypto";
import { InvalidArgumentError, NotFoundError } from "../util/errors.js";

/** Characters of a full id. */
export const ID_LENGTH = 64;

export function newId(): string {
  return randomBytes(ID_LENGTH / 2).toString("hex");
}

/** The ids a store holds (its Map of entries fits). */
export interface IdSet {
  has(id: string): boolean;
  keys(): Iterable<string>;
}

/**
 * The one id of `ids` that `ref` names: the id itself (a map hit, what kubelet always sends),
 * else the one id `ref` is a prefix of. Only a ref shorter than a full id is looked for as a
 * prefix, so an unknown full id costs no scan. NotFoundError when none, InvalidArgumentError
 * when several share the prefix.
 */
export function resolveId(ref: string, kind: string, ids: IdSet): string {
  if (!ref) throw new InvalidArgumentError(`${kind} id must not be empty`);
  if (ids.has(ref)) return ref;
  let found: string | undefined;
  let matches = 0;
  if (ref.length < ID_LENGTH) {
    for (const id of ids.keys()) {
      if (!id.startsWith(ref)) continue;
      found = id;
      matches++;
    }
  }
  if (matches === 0) throw new NotFoundError(`${kind} ${JSON.stringify(ref)} not found`);
  if (matches > 1)
    throw new InvalidArgumentError(`${kind} id prefix ${JSON.stringify(ref)} is ambiguous: ${matches} ${kind}s match`);
  return found!;
}
