// The NRI view of a container being created: what its OCI spec says (command, environment,
// mounts, hooks, rlimits, Linux namespaces, devices and resources), on top of the identity the
// CRI layer gives (id, pod, name, labels, annotations, state). Plugins decide from this view,
// and each later plugin sees the spec as adjusted by the earlier ones.
import type { Container, Hook as NriHook, LinuxResources } from "../gen/nri/api.js";
import type { Hook, Resources, Spec } from "../oci/spec.js";

export function containerFromSpec(base: Container, spec: Spec): Container {
  const hooks = spec.hooks ?? {};
  const hook = (h: Hook): NriHook => ({
    path: h.path,
    args: h.args ?? [],
    env: h.env ?? [],
    timeout: h.timeout !== undefined ? { value: BigInt(h.timeout) } : undefined,
  });
  return {
    ...base,
    annotations: { ...base.annotations, ...(spec.annotations ?? {}) },
    args: [...spec.process.args],
    env: [...spec.process.env],
    mounts: spec.mounts.map((m) => ({
      destination: m.destination,
      type: m.type ?? "",
      source: m.source ?? "",
      options: m.options ?? [],
    })),
    hooks: {
      prestart: (hooks.prestart ?? []).map(hook),
      createRuntime: (hooks.createRuntime ?? []).map(hook),
      createContainer: (hooks.createContainer ?? []).map(hook),
      startContainer: (hooks.startContainer ?? []).map(hook),
      poststart: (hooks.poststart ?? []).map(hook),
      poststop: (hooks.poststop ?? []).map(hook),
    },
    rlimits: (spec.process.rlimits ?? []).map((r) => ({ type: r.type, soft: BigInt(r.soft), hard: BigInt(r.hard) })),
    user: {
      uid: spec.process.user.uid,
      gid: spec.process.user.gid,
      additionalGids: spec.process.user.additionalGids ?? [],
    },
    linux: {
      namespaces: spec.linux.namespaces.map((n) => ({ type: n.type, path: n.path ?? "" })),
      devices: (spec.linux.devices ?? []).map((d) => ({
        path: d.path,
        type: d.type,
        major: BigInt(d.major),
        minor: BigInt(d.minor),
        fileMode: d.fileMode !== undefined ? { value: d.fileMode } : undefined,
        uid: d.uid !== undefined ? { value: d.uid } : undefined,
        gid: d.gid !== undefined ? { value: d.gid } : undefined,
      })),
      resources: resourcesToNri(spec.linux.resources),
      oomScoreAdj: spec.process.oomScoreAdj !== undefined ? { value: BigInt(spec.process.oomScoreAdj) } : undefined,
      cgroupsPath: spec.linux.cgroupsPath ?? "",
      ioPriority: undefined,
      seccompProfile: undefined,
      seccompPolicy: undefined,
      sysctl: { ...(spec.linux.sysctl ?? {}) },
      netDevices: {},
      scheduler: undefined,
      rdt: undefined,
    },
  };
}

const i64 = (v: number | undefined) => (v !== undefined ? { value: BigInt(v) } : undefined);

/** OCI resources in NRI's message form (absent values stay absent). */
export function resourcesToNri(r: Resources | undefined): LinuxResources | undefined {
  if (!r) return undefined;
  return {
    memory: r.memory
      ? {
          limit: i64(r.memory.limit),
          reservation: i64(r.memory.reservation),
          swap: i64(r.memory.swap),
          kernel: undefined,
          kernelTcp: undefined,
          swappiness: i64(r.memory.swappiness),
          disableOomKiller: r.memory.disableOOMKiller !== undefined ? { value: r.memory.disableOOMKiller } : undefined,
          useHierarchy: undefined,
        }
      : undefined,
    cpu: r.cpu
      ? {
          shares: i64(r.cpu.shares),
          quota: i64(r.cpu.quota),
          period: i64(r.cpu.period),
          realtimeRuntime: undefined,
          realtimePeriod: undefined,
          cpus: r.cpu.cpus ?? "",
          mems: r.cpu.mems ?? "",
        }
      : undefined,
    hugepageLimits: (r.hugepageLimits ?? []).map((h) => ({ pageSize: h.pageSize, limit: BigInt(h.limit) })),
    blockioClass: undefined,
    rdtClass: undefined,
    unified: { ...(r.unified ?? {}) },
    devices: (r.devices ?? []).map((d) => ({
      allow: d.allow,
      type: d.type ?? "",
      major: i64(d.major),
      minor: i64(d.minor),
      access: d.access ?? "",
    })),
    pids: r.pids ? { limit: BigInt(r.pids.limit) } : undefined,
  };
}
