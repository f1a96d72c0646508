// Which namespace a sysctl belongs to: a namespaced sysctl can only be set for a pod
// that has its own namespace of that kind (runc would refuse it at start; checking
// here gives the caller an InvalidArgument that says what to fix).

import { InvalidArgumentError } from "../util/errors.js";

const IPC_SYSCTLS = new Set([
  "kernel.msgmax",
  "kernel.msgmnb",
  "kernel.msgmni",
  "kernel.sem",
  "kernel.shmall",
  "kernel.shmmax",
  "kernel.shmmni",
  "kernel.shm_rmid_forced",
]);

export function sysctlNamespace(name: string): "net" | "ipc" | "uts" | null {
  if (name.startsWith("net.")) return "net";
  if (IPC_SYSCTLS.has(name) || name.startsWith("fs.mqueue.")) return "ipc";
  if (name === "kernel.hostname" || name === "kernel.domainname") return "uts";
  return null;
}

/** Refuses sysctls that would change the host: namespaced ones in a host namespace, and non-namespaced ones. */
export function validateSysctls(
  sysctls: Record<string, string>,
  own: { net: boolean; ipc: boolean; uts: boolean },
): void {
  for (const name of Object.keys(sysctls)) {
    const ns = sysctlNamespace(name);
    if (ns === null) {
      throw new InvalidArgumentError(
        `sysctl ${JSON.stringify(name)} is not namespaced: it would change the whole node`,
      );
    }
    if (!own[ns]) {
      throw new InvalidArgumentError(
        `sysctl ${JSON.stringify(name)} needs the pod's own ${ns} namespace, but the pod uses the host's`,
      );
    }
  }
}
