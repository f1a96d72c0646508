// Pod networking as a core service: one network namespace per pod, joined to the node's
// CNI network(s). The CRI layer calls setupPod from RunPodSandbox and teardownPod from
// StopPodSandbox/RemovePodSandbox; status() feeds the NetworkReady condition.
//
// What teardown needs (the netns path, the exact config lists and runtime args used for
// ADD, and ADD's results) is kept in one JSON file per pod under <stateDir>/pods, written
// before the first side effect and atomically replaced at each step, so a berthd that
// crashed or restarted can still undo a half-done setup or tear down a running pod.

import { mkdir, readdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import {
  addNetworkList,
  checkNetworkList,
  CniExec,
  delNetworkList,
  DEFAULT_SUBNET,
  loadNetworkConfigs,
  recognizeDefaultNetwork,
  rewriteDefaultNetworkConfig,
  writeDefaultNetworkConfig,
  type BandwidthLimits,
  type CniNetworkConfigList,
  type CniResult,
  type DefaultNetworkOptions,
  type DnsCapability,
  type PortMapping,
  type RuntimeConf,
} from "./cni.js";
import { listAllocationsOf, type IpAllocation } from "./host-local.js";
import { createNetns, isNetnsMounted, listNetns, netnsPath, removeNetns, type NetnsInfo } from "./netns.js";
import { netnsLoopbackUp } from "../sys/index.js";
import { ensureMasquerade, masqueradeOwner, removeMasquerade, type MasqueradeRule } from "./masquerade.js";
import { staleTempFiles, writeFileAtomic } from "../util/atomic-write.js";
import {
  AlreadyExistsError,
  FailedPreconditionError,
  InternalError,
  InvalidArgumentError,
  NotFoundError,
} from "../util/errors.js";

export interface NetworkManagerOptions {
  /** Directory for per-pod network state (pods/<podId>.json). Keep it on persistent storage
   *  (e.g. <root>/network): after a reboot it still tells which IPs host-local must release. */
  stateDir: string;
  /** Where pinned namespaces live; default <stateDir>/netns. A tmpfs (e.g. /run/berth/netns) suits it. */
  netnsDir?: string;
  /** CNI config directory; default /etc/cni/net.d */
  confDir?: string;
  /** plugin directories, searched in order; default ["/opt/cni/bin", "/usr/lib/cni"] */
  binDirs?: string[];
  /** how many config files (lexical order) each pod joins: eth0, eth1, ...; default 1 */
  maxConfNum?: number;
  /** time limit per plugin invocation; default 60 s */
  pluginTimeoutMs?: number;
  /** the config written when conf_dir has none; false never writes one */
  defaultNetwork?: DefaultNetworkOptions | false;
}

export interface PodNetworkRequest {
  /** sandbox id; names the netns and is CNI_CONTAINERID */
  podId: string;
  /** pod metadata name / namespace / uid (K8S_POD_* in CNI_ARGS) */
  name: string;
  namespace: string;
  uid: string;
  portMappings?: PortMapping[];
  bandwidth?: BandwidthLimits;
  dns?: DnsCapability;
  /** host network pods get no namespace and no CNI */
  hostNetwork?: boolean;
  /**
   * Makes and pins the namespace at the given path instead of a plain new one (a pod with a
   * user namespace needs its netns owned by that namespace); must leave nothing on failure.
   */
  makeNetns?: (path: string) => Promise<void>;
  /** Called once the netns exists (lo up), before CNI runs: the sandbox may be created meanwhile. */
  onNetns?: (path: string) => void;
}

export interface PodIP {
  /** bare address, no prefix: what CRI's PodSandboxNetworkStatus.ip wants */
  address: string;
  prefixLength: number;
  gateway?: string;
  family: 4 | 6;
  /** the network it came from */
  network: string;
}

export interface NetworkAttachment {
  network: string;
  ifName: string;
  result: CniResult;
}

export interface PodNetwork {
  /** "" for host network pods */
  netnsPath: string;
  /** IPv4 first; ips[0] is the pod's primary IP */
  ips: PodIP[];
  /** the first (default) network's CNI result; null for host network pods */
  result: CniResult | null;
  /** every network joined, in order */
  attachments: NetworkAttachment[];
}

export interface NetworkStatus {
  ready: boolean;
  /** "" when ready, else "NetworkPluginNotReady" (the reason kubelet shows) */
  reason: string;
  message: string;
}

/** The per-pod record on disk. Versioned so a newer berthd can read an older one. */
interface PodNetworkState {
  version: 1;
  podId: string;
  netnsPath: string;
  /** setting-up: a crash here leaves work for teardownPod; ready: setup finished */
  phase: "setting-up" | "ready";
  /** lists exactly as used for ADD, so DEL runs the same config even if conf_dir changed */
  networks: { list: CniNetworkConfigList; ifName: string; result?: CniResult }[];
  /**
   * Written by berthd versions that ran the CNI loopback plugin; ignored now. `lo` is brought
   * up in-process and holds nothing on the host, so there is nothing to undo for it.
   */
  loopback?: { list: CniNetworkConfigList; added: boolean };
  runtime: Omit<RuntimeConf, "ifName">;
}

const STATE_FILE_RE = /^(.+)\.json$/;

export class NetworkManager {
  readonly stateDir: string;
  readonly netnsDir: string;
  readonly confDir: string;
  readonly maxConfNum: number;
  readonly exec: CniExec;
  private readonly defaultNetwork: DefaultNetworkOptions | false;
  /** per-pod operation chains: setup and teardown of one pod never overlap */
  private readonly podLocks = new Map<string, Promise<unknown>>();
  /** one writer of the default config at a time */
  private writingDefault: Promise<CniNetworkConfigList> | undefined;

  constructor(opts: NetworkManagerOptions) {
    this.stateDir = opts.stateDir;
    this.netnsDir = opts.netnsDir ?? join(opts.stateDir, "netns");
    this.confDir = opts.confDir ?? "/etc/cni/net.d";
    this.maxConfNum = opts.maxConfNum ?? 1;
    this.defaultNetwork = opts.defaultNetwork ?? {};
    this.exec = new CniExec({
      binDirs: opts.binDirs ?? ["/opt/cni/bin", "/usr/lib/cni"],
      timeoutMs: opts.pluginTimeoutMs,
    });
  }

  private get podsDir(): string {
    return join(this.stateDir, "pods");
  }

  private stateFile(podId: string): string {
    return join(this.podsDir, `${podId}.json`);
  }

  /**
   * Creates the state dirs and, if conf_dir has no config, writes the default one. When the
   * network in use is berth's own default, installs its masquerade rule (once, whatever the
   * number of restarts), first rewriting a default list an older berth wrote with the bridge
   * plugin's per-pod ipMasq. An administrator's own list is left alone, NAT included.
   */
  async init(): Promise<void> {
    await mkdir(this.podsDir, { recursive: true, mode: 0o700 });
    await mkdir(this.netnsDir, { recursive: true, mode: 0o711 });
    const [first] = await this.networks();
    if (this.defaultNetwork === false) return;
    const kind = recognizeDefaultNetwork(first, this.confDir, this.defaultNetwork);
    // Pods set up with the old list keep it in their state records, so their DEL still
    // removes their per-pod chains.
    if (kind === "legacy") await rewriteDefaultNetworkConfig(this.confDir, first.cniVersion, this.defaultNetwork);
    if (kind) await this.installMasquerade();
  }

  /** The masquerade rule of this manager's default network. */
  private masqueradeRule(): MasqueradeRule {
    const opts = this.defaultNetwork || {};
    return { subnet: opts.subnet ?? DEFAULT_SUBNET, owner: masqueradeOwner(this.confDir) };
  }

  private async installMasquerade(): Promise<void> {
    const rule = this.masqueradeRule();
    try {
      await ensureMasquerade(rule);
    } catch (err) {
      throw new InternalError(
        `cannot install the outbound NAT of the default pod network ${rule.subnet}: ${(err as Error).message}`,
        { cause: err },
      );
    }
  }

  /**
   * Uninstall: removes what init() installed on the host for the default network (its
   * masquerade rule, and berth's chain once no rule is left in it). Returns the rules removed.
   */
  async uninstall(): Promise<MasqueradeRule[]> {
    const owner = masqueradeOwner(this.confDir);
    return removeMasquerade((o) => o === owner);
  }

  /** The networks each pod joins, writing the default config first when there is none. */
  async networks(): Promise<CniNetworkConfigList[]> {
    const lists = await loadNetworkConfigs(this.confDir, this.maxConfNum);
    if (lists.length > 0) return lists;
    if (this.defaultNetwork === false) {
      throw new FailedPreconditionError(`no CNI network config found in ${this.confDir}`);
    }
    this.writingDefault ??= writeDefaultNetworkConfig(this.confDir, this.exec, this.defaultNetwork)
      .then(async (list) => {
        await this.installMasquerade(); // conf_dir emptied after start: the rule comes with the list
        return list;
      })
      .finally(() => {
        this.writingDefault = undefined;
      });
    return [await this.writingDefault];
  }

  /** NetworkReady for CRI Status: a valid config is present and every plugin it names is installed. */
  async status(): Promise<NetworkStatus> {
    const notReady = (message: string): NetworkStatus => ({ ready: false, reason: "NetworkPluginNotReady", message });
    let lists: CniNetworkConfigList[];
    try {
      lists = await loadNetworkConfigs(this.confDir, this.maxConfNum);
    } catch (err) {
      return notReady(`cni config load failed: ${(err as Error).message}`);
    }
    if (lists.length === 0) return notReady(`cni config uninitialized: no network config found in ${this.confDir}`);
    const missing = await this.exec.missingPlugins(lists);
    if (missing.length > 0) {
      return notReady(
        `cni plugin(s) ${missing.join(", ")} not found in ${this.exec.binDirs.join(":")} (needed by ${lists.map((l) => l.source).join(", ")})`,
      );
    }
    return { ready: true, reason: "", message: "" };
  }

  private withPodLock<T>(podId: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.podLocks.get(podId) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const settled = run.catch(() => undefined);
    this.podLocks.set(podId, settled);
    void settled.then(() => {
      if (this.podLocks.get(podId) === settled) this.podLocks.delete(podId);
    });
    return run;
  }

  private async readState(podId: string): Promise<PodNetworkState | undefined> {
    let text: string;
    try {
      text = await readFile(this.stateFile(podId), "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw err;
    }
    return JSON.parse(text) as PodNetworkState;
  }

  private async writeState(state: PodNetworkState): Promise<void> {
    await mkdir(this.podsDir, { recursive: true, mode: 0o700 });
    await writeFileAtomic(this.stateFile(state.podId), JSON.stringify(state), 0o600);
  }

  /**
   * Creates the pod's network namespace, brings its lo up and runs ADD for every network.
   * Any failure undoes all of it (DEL of every list, netns removed) before it throws.
   */
  async setupPod(req: PodNetworkRequest): Promise<PodNetwork> {
    if (req.hostNetwork) return { netnsPath: "", ips: [], result: null, attachments: [] };
    const nsPath = netnsPath(this.netnsDir, req.podId); // also validates podId as a file name
    for (const [k, v] of [
      ["name", req.name],
      ["namespace", req.namespace],
      ["uid", req.uid],
    ] as const) {
      if (/[;=]/.test(v)) throw new InvalidArgumentError(`pod ${k} ${JSON.stringify(v)} must not contain ";" or "="`);
    }
    return this.withPodLock(req.podId, async () => {
      const existing = await this.readState(req.podId);
      if (existing?.phase === "ready") throw new AlreadyExistsError(`pod ${req.podId} already has its network set up`);
      if (existing) await this.teardownLocked(existing);

      const lists = await this.networks();
      // Refuse before any side effect when a plugin is missing: nothing to undo then.
      const missing = await this.exec.missingPlugins(lists);
      if (missing.length > 0) {
        throw new FailedPreconditionError(
          `cannot set up pod network: CNI plugin(s) ${missing.join(", ")} not found in ${this.exec.binDirs.join(":")}`,
        );
      }
      const state: PodNetworkState = {
        version: 1,
        podId: req.podId,
        netnsPath: nsPath,
        phase: "setting-up",
        networks: lists.map((list, i) => ({ list, ifName: `eth${i}` })),
        runtime: {
          containerId: req.podId,
          netns: nsPath,
          args: [
            ["IgnoreUnknown", "1"],
            ["K8S_POD_NAMESPACE", req.namespace],
            ["K8S_POD_NAME", req.name],
            ["K8S_POD_INFRA_CONTAINER_ID", req.podId],
            ["K8S_POD_UID", req.uid],
          ],
          capabilityArgs: {
            portMappings: req.portMappings?.length ? req.portMappings : undefined,
            bandwidth: req.bandwidth,
            dns: req.dns,
          },
        },
      };
      await this.writeState(state);
      try {
        await createNetns(this.netnsDir, req.podId, req.makeNetns);
        // `lo` up, as the CNI loopback plugin would, but without a process start on ADD (and
        // none on DEL: lo lives and dies with the namespace and holds nothing on the host).
        bringLoopbackUp(nsPath);
        req.onNetns?.(nsPath);
        for (const [i, net] of state.networks.entries()) {
          net.result = await addNetworkList(this.exec, net.list, { ...state.runtime, ifName: net.ifName });
          // the last result is written with "ready" (a crash before: torn down as a half-done ADD)
          if (i < state.networks.length - 1) await this.writeState(state);
        }
        state.phase = "ready";
        await this.writeState(state);
      } catch (err) {
        try {
          await this.teardownLocked(state);
        } catch (cleanupErr) {
          // The state file stays behind, so a later teardownPod (or recovery) can finish.
          // The setup error keeps its type (it is the cause the caller must act on).
          if (err instanceof Error) {
            err.message += `; cleaning up after it also failed, retry teardownPod(${req.podId}): ${(cleanupErr as Error).message}`;
          }
        }
        throw err;
      }
      return toPodNetwork(state);
    });
  }

  /** Undoes setupPod: DEL on every network (reverse order), then removes the netns. Idempotent. */
  async teardownPod(podId: string): Promise<void> {
    const nsPath = netnsPath(this.netnsDir, podId);
    await this.withPodLock(podId, async () => {
      const state = await this.readState(podId);
      if (state) await this.teardownLocked(state);
      else await removeNetns(nsPath); // a netns with no record: nothing else can be known about it
    });
  }

  private async teardownLocked(state: PodNetworkState): Promise<void> {
    // A namespace that is not mounted (a crash between creating its file and mounting it, or
    // an earlier teardown cut short) is passed as an empty CNI_NETNS, as the CNI spec allows
    // for DEL and containerd does: plugins then release what they hold on the host (IPs,
    // iptables rules), whereas a path to a plain file makes the bridge plugin fail ("not a
    // network namespace") on every attempt, so the pod could never be torn down.
    const mounted = await isNetnsMounted(state.netnsPath);
    const runtime = mounted ? state.runtime : { ...state.runtime, netns: "" };
    for (const net of [...state.networks].reverse()) {
      await delNetworkList(this.exec, net.list, { ...runtime, ifName: net.ifName }, net.result);
    }
    // Nothing to do for lo (nor for an older record's loopback plugin ADD): it dies with the namespace.
    await removeNetns(state.netnsPath);
    await rm(this.stateFile(state.podId), { force: true });
  }

  /** The network of a set-up pod, from its state record (e.g. for PodSandboxStatus after a restart). */
  async podNetwork(podId: string): Promise<PodNetwork | undefined> {
    netnsPath(this.netnsDir, podId);
    const state = await this.readState(podId);
    return state?.phase === "ready" ? toPodNetwork(state) : undefined;
  }

  /** CHECK on every network of a set-up pod; throws the plugin's error when something drifted. */
  async checkPod(podId: string): Promise<void> {
    const state = await this.readState(podId);
    if (!state || state.phase !== "ready") throw new NotFoundError(`pod ${podId} has no network set up`);
    if (!(await isNetnsMounted(state.netnsPath))) {
      throw new FailedPreconditionError(`network namespace ${state.netnsPath} of pod ${podId} is gone`);
    }
    for (const net of state.networks) {
      if (net.result) await checkNetworkList(this.exec, net.list, { ...state.runtime, ifName: net.ifName }, net.result);
    }
  }

  /** Pinned namespaces in netnsDir (for leak checks and restart recovery). */
  listPinnedNetns(): Promise<NetnsInfo[]> {
    return listNetns(this.netnsDir);
  }

  /** Pods with a network state record, set up or interrupted mid-setup. */
  async listPodStates(): Promise<{ podId: string; phase: PodNetworkState["phase"] }[]> {
    let names: string[];
    try {
      names = await readdir(this.podsDir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw err;
    }
    const out: { podId: string; phase: PodNetworkState["phase"] }[] = [];
    for (const n of names.sort()) {
      const m = STATE_FILE_RE.exec(n);
      if (!m) continue;
      const state = await this.readState(m[1]).catch(() => undefined);
      if (state) out.push({ podId: state.podId, phase: state.phase });
    }
    return out;
  }

  /** Temporary files of state record writes a previous berthd was killed in the middle of. */
  staleTempFiles(): Promise<string[]> {
    return staleTempFiles(this.podsDir);
  }

  /** host-local's reservations for the configured networks and those pods were set up with. */
  async ipAllocations(): Promise<IpAllocation[]> {
    const lists: CniNetworkConfigList[] = await loadNetworkConfigs(this.confDir, this.maxConfNum).catch(() => []);
    const states = await Promise.all(
      (await this.listPodStates()).map((p) => this.readState(p.podId).catch(() => undefined)),
    );
    return listAllocationsOf([...lists, ...states.flatMap((st) => st?.networks.map((n) => n.list) ?? [])]);
  }

  /**
   * Restart recovery: tears down every pod network (state record or pinned netns) whose pod
   * is not in `keep`, plus any interrupted setup. Returns the pod ids cleaned up; errors are
   * collected, not thrown, so one stuck pod does not block the others.
   */
  async recover(keep: Set<string>): Promise<{ cleaned: string[]; failed: { podId: string; error: Error }[] }> {
    const ids = new Set<string>();
    for (const s of await this.listPodStates()) if (!keep.has(s.podId) || s.phase !== "ready") ids.add(s.podId);
    for (const ns of await this.listPinnedNetns()) if (!keep.has(ns.name)) ids.add(ns.name);
    const cleaned: string[] = [];
    const failed: { podId: string; error: Error }[] = [];
    for (const id of ids) {
      try {
        await this.teardownPod(id);
        cleaned.push(id);
      } catch (error) {
        failed.push({ podId: id, error: error as Error });
      }
    }
    return { cleaned, failed };
  }
}

function bringLoopbackUp(nsPath: string): void {
  try {
    netnsLoopbackUp(nsPath);
  } catch (err) {
    throw new InternalError(`bring up lo in network namespace ${nsPath}: ${(err as Error).message}`, { cause: err });
  }
}

/** Splits "10.85.0.7/16" into its parts. */
function splitCidr(cidr: string): { address: string; prefixLength: number } {
  const slash = cidr.indexOf("/");
  if (slash < 0) return { address: cidr, prefixLength: cidr.includes(":") ? 128 : 32 };
  return { address: cidr.slice(0, slash), prefixLength: Number(cidr.slice(slash + 1)) };
}

function podIPs(network: string, ifName: string, result: CniResult): PodIP[] {
  const ips: PodIP[] = [];
  for (const ip of result.ips ?? []) {
    // Only addresses on the pod's own interface: a result may also list the host side.
    if (ip.interface !== undefined) {
      const iface = result.interfaces?.[ip.interface];
      if (iface && !(iface.sandbox || iface.name === ifName)) continue;
    }
    const { address, prefixLength } = splitCidr(ip.address);
    const family = ip.version === "6" || address.includes(":") ? 6 : 4;
    ips.push({ address, prefixLength, gateway: ip.gateway, family, network });
  }
  return ips;
}

function toPodNetwork(state: PodNetworkState): PodNetwork {
  const attachments: NetworkAttachment[] = [];
  for (const n of state.networks) {
    if (n.result) attachments.push({ network: n.list.name, ifName: n.ifName, result: n.result });
  }
  const all = attachments.flatMap((a) => podIPs(a.network, a.ifName, a.result));
  const ips = [...all.filter((i) => i.family === 4), ...all.filter((i) => i.family === 6)];
  return { netnsPath: state.netnsPath, ips, result: attachments[0]?.result ?? null, attachments };
}
