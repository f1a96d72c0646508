// A pod's user namespace from its CRI config (kubelet's hostUsers: false): the checks
// containerd makes (podsandbox/helpers_linux.go parseUsernsIDs) and the OCI mappings. Pure
// functions, no I/O: what the host and runtime can do is checked by the callers.

import { NamespaceMode, type IDMapping as CriIdMapping, type UserNamespace } from "../../gen/cri/runtime/v1/api.js";
import type { IDMapping } from "../../oci/spec.js";
import { InvalidArgumentError } from "../../util/errors.js";

/** A pod's user namespace: the one uid and one gid range its container ids 0.. map to. */
export interface PodUserns {
  uidMappings: IDMapping[];
  gidMappings: IDMapping[];
}

const MAX_ID = 2 ** 32 - 1; // (uid_t)-1 is no id

function mapping(list: CriIdMapping[], what: "UID" | "GID"): IDMapping {
  // kubelet sends one range per kind; several would need the file ownership of every range
  // to be shifted differently, which no idmapped mount here is set up for.
  if (list.length !== 1) {
    throw new InvalidArgumentError(
      `user namespace ${what} mappings: exactly one mapping is supported, got ${list.length}`,
    );
  }
  const m = list[0]!;
  if (m.length < 1)
    throw new InvalidArgumentError(`user namespace ${what} mapping: length ${m.length} is not positive`);
  // The container's root must be someone: a process without a mapped id 0 cannot set itself up.
  if (m.containerId !== 0) {
    throw new InvalidArgumentError(
      `user namespace ${what} mapping must start at container id 0 (the container's root), got ${m.containerId}`,
    );
  }
  if (m.hostId + m.length > MAX_ID || m.containerId + m.length > MAX_ID) {
    throw new InvalidArgumentError(
      `user namespace ${what} mapping ${m.containerId}:${m.hostId}:${m.length} goes past the largest id`,
    );
  }
  return { containerID: m.containerId, hostID: m.hostId, size: m.length };
}

/**
 * The pod's user namespace, or null when the pod shares the node's (no options, or mode
 * NODE). Mode POD needs one UID and one GID mapping starting at container id 0; CONTAINER
 * and TARGET are not modes a user namespace can have (a pod's containers share one).
 */
export function podUserns(opts: UserNamespace | undefined): PodUserns | null {
  if (!opts) return null;
  switch (opts.mode) {
    case NamespaceMode.NODE:
      if (opts.uids.length > 0 || opts.gids.length > 0) {
        throw new InvalidArgumentError(
          `user namespace mode NODE takes no mappings (got ${opts.uids.length} UID and ${opts.gids.length} GID mappings)`,
        );
      }
      return null;
    case NamespaceMode.POD:
      if (opts.uids.length === 0 || opts.gids.length === 0) {
        throw new InvalidArgumentError("user namespace mode POD needs a UID and a GID mapping");
      }
      return { uidMappings: [mapping(opts.uids, "UID")], gidMappings: [mapping(opts.gids, "GID")] };
    default:
      throw new InvalidArgumentError(
        `user namespace mode ${NamespaceMode[opts.mode] ?? opts.mode} is not supported: a pod has mode POD (its own) or NODE`,
      );
  }
}

/** Same mode and mappings (a container must ask for its pod's user namespace, as containerd checks). */
export function sameUserns(a: UserNamespace | undefined, b: UserNamespace | undefined): boolean {
  const mode = (u: UserNamespace | undefined) => u?.mode ?? NamespaceMode.NODE;
  const key = (l: CriIdMapping[] | undefined) =>
    JSON.stringify((l ?? []).map((m) => [m.containerId, m.hostId, m.length]));
  return mode(a) === mode(b) && key(a?.uids) === key(b?.uids) && key(a?.gids) === key(b?.gids);
}

/** The host uid and gid the container's root maps to (the owner the upper layer of its rootfs gets). */
export function hostRoot(u: PodUserns): { uid: number; gid: number } {
  return { uid: u.uidMappings[0]!.hostID, gid: u.gidMappings[0]!.hostID };
}
