// Applying an NRI plugin's ContainerAdjustment (its CreateContainer answer) to the container's
// OCI spec, as containerd's NRI generator does (containerd/nri pkg/runtime-tools/generate).
// Keys, mount destinations and device paths marked with a leading "-" are removals.
// What berth cannot apply (I/O priority, seccomp policy, scheduler, RDT, memory policy, network
// devices, block I/O and RDT classes, real-time CPU limits) fails the CreateContainer with
// UNIMPLEMENTED naming the field: a plugin's decision is never silently dropped.
import {
  ContainerAdjustment,
  type Hook as NriHook,
  Hooks,
  type Hooks as NriHooks,
  type LinuxDevice,
  LinuxContainerAdjustment,
  LinuxResources,
} from "../gen/nri/api.js";
import type { Hook, Hooks as OciHooks, NamespaceType, Resources, Spec } from "../oci/spec.js";
import { InvalidArgumentError, UnimplementedError } from "../util/errors.js";

/** What the caller must still do after the spec was adjusted: CDI devices to inject. */
export interface AdjustmentRest {
  cdiDevices: string[];
}

/** Splits NRI's removal marker off a key ("-key" removes key). */
export function removalOf(key: string): { key: string; remove: boolean } {
  return key.startsWith("-") ? { key: key.slice(1), remove: true } : { key, remove: false };
}

/** Applies `adj` (from plugin `plugin`) to `spec` in place. */
export function applyAdjustment(spec: Spec, adj: ContainerAdjustment, plugin: string): AdjustmentRest {
  const refuse = (field: string) => {
    throw new UnimplementedError(`NRI plugin ${plugin} adjusted ${field}, which berth cannot apply`);
  };
  for (const [k, v] of Object.entries(adj.annotations)) {
    const { key, remove } = removalOf(k);
    spec.annotations ??= {};
    if (remove) delete spec.annotations[key];
    else spec.annotations[key] = v;
  }
  for (const m of adj.mounts) {
    const { key: dest, remove } = removalOf(m.destination);
    if (!dest.startsWith("/"))
      throw new InvalidArgumentError(`NRI plugin ${plugin}: mount destination ${JSON.stringify(dest)} is not absolute`);
    spec.mounts = spec.mounts.filter((x) => x.destination !== dest);
    if (!remove) spec.mounts.push({ destination: dest, type: m.type, source: m.source, options: [...m.options] });
  }
  for (const kv of adj.env) {
    const { key, remove } = removalOf(kv.key);
    if (key === "" || key.includes("="))
      throw new InvalidArgumentError(`NRI plugin ${plugin}: bad environment variable name ${JSON.stringify(key)}`);
    spec.process.env = spec.process.env.filter((e) => e.split("=", 1)[0] !== key);
    if (!remove) spec.process.env.push(`${key}=${kv.value}`);
  }
  if (adj.hooks) addHooks(spec, adj.hooks);
  for (const r of adj.rlimits) {
    const rl = { type: r.type, soft: Number(r.soft), hard: Number(r.hard) };
    spec.process.rlimits = [...(spec.process.rlimits ?? []).filter((x) => x.type !== r.type), rl];
  }
  if (adj.args.length > 0) {
    // A leading "" marks UpdateArgs (replace whatever another plugin set); same effect here.
    const args = adj.args[0] === "" ? adj.args.slice(1) : adj.args;
    if (args.length > 0) spec.process.args = [...args];
  }
  const l = adj.linux;
  if (l) {
    for (const d of l.devices) adjustDevice(spec, d);
    if (l.resources) adjustResources(spec, l.resources, refuse);
    if (l.cgroupsPath) spec.linux.cgroupsPath = l.cgroupsPath;
    if (l.oomScoreAdj) spec.process.oomScoreAdj = Number(l.oomScoreAdj.value);
    for (const [k, v] of Object.entries(l.sysctl)) {
      const { key, remove } = removalOf(k);
      spec.linux.sysctl ??= {};
      if (remove) delete spec.linux.sysctl[key];
      else spec.linux.sysctl[key] = v;
    }
    for (const ns of l.namespaces) {
      const { key: type, remove } = removalOf(ns.type);
      if (!["pid", "network", "mount", "ipc", "uts", "user", "cgroup"].includes(type))
        throw new InvalidArgumentError(`NRI plugin ${plugin}: unknown namespace type ${JSON.stringify(type)}`);
      spec.linux.namespaces = spec.linux.namespaces.filter((n) => n.type !== type);
      if (!remove) spec.linux.namespaces.push({ type: type as NamespaceType, ...(ns.path ? { path: ns.path } : {}) });
    }
    if (l.ioPriority) refuse("linux.io_priority");
    if (l.seccompPolicy) refuse("linux.seccomp_policy");
    if (Object.keys(l.netDevices).length > 0) refuse("linux.net_devices");
    if (l.scheduler) refuse("linux.scheduler");
    if (l.rdt) refuse("linux.rdt");
    if (l.memoryPolicy) refuse("linux.memory_policy");
  }
  return { cdiDevices: adj.CDIDevices.map((d) => d.name) };
}

const hookKinds = ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"] as const;

function addHooks(spec: Spec, hooks: NriHooks): void {
  const toOci = (h: NriHook): Hook => ({
    path: h.path,
    ...(h.args.length ? { args: [...h.args] } : {}),
    ...(h.env.length ? { env: [...h.env] } : {}),
    ...(h.timeout ? { timeout: Number(h.timeout.value) } : {}),
  });
  for (const kind of hookKinds) {
    const add = hooks[kind];
    if (add.length === 0) continue;
    const out: OciHooks = (spec.hooks ??= {});
    out[kind] = [...(out[kind] ?? []), ...add.map(toOci)];
  }
}

/** A device node, and the cgroup rule that lets the container use it (as NRI's generator). */
function adjustDevice(spec: Spec, d: LinuxDevice): void {
  const { key: path, remove } = removalOf(d.path);
  spec.linux.devices = (spec.linux.devices ?? []).filter((x) => x.path !== path);
  if (remove) return;
  spec.linux.devices.push({
    path,
    type: d.type,
    major: Number(d.major),
    minor: Number(d.minor),
    ...(d.fileMode ? { fileMode: d.fileMode.value } : {}),
    ...(d.uid ? { uid: d.uid.value } : {}),
    ...(d.gid ? { gid: d.gid.value } : {}),
  });
  const res = (spec.linux.resources ??= {});
  res.devices = [
    ...(res.devices ?? []),
    { allow: true, type: d.type, major: Number(d.major), minor: Number(d.minor), access: "rwm" },
  ];
}

/** Sets in `res` what `r` sets (an UpdateContainer answer); refuses what berth cannot apply. */
export function applyNriResources(res: Resources, r: LinuxResources, plugin: string): void {
  adjustResourcesOf(res, r, (field) => {
    throw new UnimplementedError(`NRI plugin ${plugin} updated ${field}, which berth cannot apply`);
  });
}

function adjustResources(spec: Spec, r: LinuxResources, refuse: (field: string) => never): void {
  adjustResourcesOf((spec.linux.resources ??= {}), r, refuse);
}

function adjustResourcesOf(res: Resources, r: LinuxResources, refuse: (field: string) => never): void {
  const m = r.memory;
  if (m) {
    const mem = (res.memory ??= {});
    if (m.limit) mem.limit = Number(m.limit.value);
    if (m.reservation) mem.reservation = Number(m.reservation.value);
    if (m.swap) mem.swap = Number(m.swap.value);
    if (m.swappiness) mem.swappiness = Number(m.swappiness.value);
    if (m.disableOomKiller) mem.disableOOMKiller = m.disableOomKiller.value;
    if (m.kernel) refuse("linux.resources.memory.kernel");
    if (m.kernelTcp) refuse("linux.resources.memory.kernel_tcp");
    // use_hierarchy is a cgroup v1 relic runc ignores; nothing to apply.
  }
  const c = r.cpu;
  if (c) {
    const cpu = (res.cpu ??= {});
    if (c.shares) cpu.shares = Number(c.shares.value);
    if (c.quota) cpu.quota = Number(c.quota.value);
    if (c.period) cpu.period = Number(c.period.value);
    if (c.cpus) cpu.cpus = c.cpus;
    if (c.mems) cpu.mems = c.mems;
    if (c.realtimeRuntime) refuse("linux.resources.cpu.realtime_runtime");
    if (c.realtimePeriod) refuse("linux.resources.cpu.realtime_period");
  }
  for (const h of r.hugepageLimits) {
    res.hugepageLimits = [
      ...(res.hugepageLimits ?? []).filter((x) => x.pageSize !== h.pageSize),
      { pageSize: h.pageSize, limit: Number(h.limit) },
    ];
  }
  for (const [k, v] of Object.entries(r.unified)) {
    const { key, remove } = removalOf(k);
    res.unified ??= {};
    if (remove) delete res.unified[key];
    else res.unified[key] = v;
  }
  for (const d of r.devices) {
    res.devices = [
      ...(res.devices ?? []),
      {
        allow: d.allow,
        ...(d.type ? { type: d.type } : {}),
        ...(d.major ? { major: Number(d.major.value) } : {}),
        ...(d.minor ? { minor: Number(d.minor.value) } : {}),
        ...(d.access ? { access: d.access } : {}),
      },
    ];
  }
  if (r.pids) res.pids = { limit: Number(r.pids.limit) };
  if (r.blockioClass) refuse("linux.resources.blockio_class");
  if (r.rdtClass) refuse("linux.resources.rdt_class");
}

/** `b`'s set fields over `a`'s (ts-proto leaves unset optional fields as undefined keys). */
function over<T extends object>(a: T | undefined, b: T | undefined): T | undefined {
  if (!b) return a;
  if (!a) return b;
  const set = Object.fromEntries(Object.entries(b).filter(([, v]) => v !== undefined && v !== "")) as Partial<T>;
  return { ...a, ...set };
}

/**
 * The adjustments of several plugins as one (what a validator plugin is shown): maps merged,
 * lists concatenated in plugin order, single values and resource fields last-set-wins. The
 * removal markers stay in place, so the result applied at once equals the parts applied in turn.
 */
export function mergeAdjustments(adjs: ContainerAdjustment[]): ContainerAdjustment {
  const out = ContainerAdjustment.fromPartial({});
  for (const a of adjs) {
    Object.assign(out.annotations, a.annotations);
    out.mounts.push(...a.mounts);
    out.env.push(...a.env);
    out.rlimits.push(...a.rlimits);
    out.CDIDevices.push(...a.CDIDevices);
    if (a.args.length > 0) out.args = [...a.args];
    if (a.hooks) {
      const h = (out.hooks ??= Hooks.fromPartial({}));
      for (const kind of hookKinds) h[kind].push(...a.hooks[kind]);
    }
    const l = a.linux;
    if (l) {
      const o = (out.linux ??= LinuxContainerAdjustment.fromPartial({}));
      o.devices.push(...l.devices);
      o.namespaces.push(...l.namespaces);
      Object.assign(o.sysctl, l.sysctl);
      Object.assign(o.netDevices, l.netDevices);
      if (l.resources) {
        const r = (o.resources ??= LinuxResources.fromPartial({}));
        r.memory = over(r.memory, l.resources.memory);
        r.cpu = over(r.cpu, l.resources.cpu);
        r.hugepageLimits.push(...l.resources.hugepageLimits);
        Object.assign(r.unified, l.resources.unified);
        r.devices.push(...l.resources.devices);
        r.pids = l.resources.pids ?? r.pids;
        r.blockioClass = l.resources.blockioClass ?? r.blockioClass;
        r.rdtClass = l.resources.rdtClass ?? r.rdtClass;
      }
      if (l.cgroupsPath) o.cgroupsPath = l.cgroupsPath;
      o.oomScoreAdj = l.oomScoreAdj ?? o.oomScoreAdj;
      o.ioPriority = l.ioPriority ?? o.ioPriority;
      o.seccompPolicy = l.seccompPolicy ?? o.seccompPolicy;
      o.scheduler = l.scheduler ?? o.scheduler;
      o.rdt = l.rdt ?? o.rdt;
      o.memoryPolicy = l.memoryPolicy ?? o.memoryPolicy;
    }
  }
  return out;
}
