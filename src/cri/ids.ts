// Pod and container ids: 64 hex characters like containerd's, and short-id resolution
// (crictl and humans pass unique prefixes; kubelet always passes full ids).
import { randomBytes } from "node:crypto";
import { InvalidArgumentError, NotFoundError } from "../util/errors.js";

export function newId(): string {
  return randomBytes(32).toString("hex");
}

/** The one id `ref` is a prefix of; NotFoundError when none, InvalidArgumentError when several. */
export function resolveId(ref: string, kind: string, withPrefix: (prefix: string) => string[]): string {
  if (!ref) throw new InvalidArgumentError(`${kind} id must not be empty`);
  const ids = withPrefix(ref);
  if (ids.length === 0) throw new NotFoundError(`${kind} ${JSON.stringify(ref)} not found`);
  if (ids.includes(ref)) return ref;
  if (ids.length > 1)
    throw new InvalidArgumentError(
      `${kind} id prefix ${JSON.stringify(ref)} is ambiguous: ${ids.length} ${kind}s match`,
    );
  return ids[0]!;
}
