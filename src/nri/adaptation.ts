// berthd's NRI runtime side (containerd/nri pkg/adaptation): listens on the NRI socket, takes
// each connecting plugin through registration, configuration and synchronization, keeps the
// running plugins in NRI's order (by index, then name), and relays the CRI operations' hooks
// (hooks.ts) to the plugins subscribed to each event, one after another in that order.
//
// A plugin that times out or whose connection drops is closed and skipped, as containerd does:
// one broken plugin must not wedge every pod on the node. A plugin that answers with an error
// fails the operations that can fail (hooks.ts) and is logged for the others.
import { chmod, mkdir, mkdtemp, rename, rmdir, unlink } from "node:fs/promises";
import net from "node:net";
import { basename, dirname, join } from "node:path";

import { type Container, type ContainerAdjustment, ContainerState, Event, type PodSandbox } from "../gen/nri/api.js";
import type { Resources, Spec } from "../oci/spec.js";
import {
  DeadlineExceededError,
  FailedPreconditionError,
  UnavailableError,
  UnimplementedError,
} from "../util/errors.js";
import type { Logger } from "../util/log.js";
import { removeStaleSocket } from "../util/stale-socket.js";
import { type AdjustmentRest, applyAdjustment, applyNriResources, mergeAdjustments } from "./adjust.js";
import type { NriHooks, NriState } from "./hooks.js";
import { NriPlugin } from "./plugin.js";
import { containerFromSpec, resourcesToNri } from "./spec-view.js";
import { syncParts } from "./sync-parts.js";
import { SyncLock } from "./sync-lock.js";

export interface NriOptions {
  socketPath: string;
  registrationTimeoutMs: number;
  requestTimeoutMs: number;
  runtimeName: string;
  runtimeVersion: string;
  log: Logger;
}

export class NriAdaptation implements NriHooks {
  readonly enabled = true;
  private plugins: NriPlugin[] = [];
  private readonly pending = new Set<NriPlugin>();
  private readonly lock = new SyncLock();
  private server: net.Server | undefined;
  private state: NriState | undefined;
  private stopped = false;

  constructor(private readonly opts: NriOptions) {}

  /** Starts accepting plugins on the socket (its directory 0711, the socket 0600, as containerd). */
  async start(state: NriState): Promise<void> {
    this.state = state;
    const path = this.opts.socketPath;
    // A directory made here is 0711 whatever the umask; an existing one (say /run) is the
    // administrator's and keeps its mode.
    if (await mkdir(dirname(path), { recursive: true, mode: 0o711 })) await chmod(dirname(path), 0o711);
    await removeStaleSocket(path, "NRI socket");
    const server = net.createServer((socket) => void this.accept(socket));
    server.on("error", (err) => this.opts.log.warn({ err }, "NRI socket error"));
    // Bound in a private 0700 directory, made 0600, then renamed into place: the socket is
    // never reachable at its path with looser permissions.
    const tmp = await mkdtemp(join(dirname(path), `.${basename(path)}-`));
    try {
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(join(tmp, "s"), () => {
          server.off("error", reject);
          resolve();
        });
      });
      await chmod(join(tmp, "s"), 0o600);
      await rename(join(tmp, "s"), path);
    } catch (err) {
      server.close();
      throw err;
    } finally {
      await rmdir(tmp).catch(() => {});
    }
    this.server = server;
    this.opts.log.info({ socket: path }, "NRI: accepting plugins");
  }

  /** Tells every plugin to shut down (NRI's Shutdown), closes their connections and the socket. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    // close() stops accepting but completes only once every connection is gone: the plugins'
    // are closed below, so it is awaited last.
    const server = this.server;
    const closed = server ? new Promise<void>((resolve) => server.close(() => resolve())) : Promise.resolve();
    if (server) await unlink(this.opts.socketPath).catch(() => {});
    const all = [...this.plugins, ...this.pending];
    await Promise.all(
      all.map(async (p) => {
        await p.api.shutdown({}, { timeoutMs: Math.min(this.opts.requestTimeoutMs, 1000) }).catch(() => {});
        p.close();
      }),
    );
    this.plugins = [];
    await closed;
  }

  /** The running plugins, in the order they are called ("00-name" labels). */
  get pluginNames(): string[] {
    return this.plugins.map((p) => p.label);
  }

  private async accept(socket: net.Socket): Promise<void> {
    const log = this.opts.log;
    if (this.stopped) {
      socket.destroy();
      return;
    }
    const p = new NriPlugin(socket, {
      runtimeName: this.opts.runtimeName,
      runtimeVersion: this.opts.runtimeVersion,
      registrationTimeoutMs: this.opts.registrationTimeoutMs,
      requestTimeoutMs: this.opts.requestTimeoutMs,
      log,
    });
    this.pending.add(p);
    p.once("close", () => {
      this.pending.delete(p);
      this.plugins = this.plugins.filter((x) => x !== p);
      log.info({ plugin: p.label }, "NRI plugin disconnected");
    });
    try {
      await p.handshake();
      // No pod or container creation runs while the snapshot is taken and sent, and the
      // plugin joins the running set before any new one starts (sync-lock.ts).
      await this.lock.exclusive(async () => {
        if (p.closed || this.stopped) return;
        const pods = this.state?.pods() ?? [];
        const containers = this.state?.containers() ?? [];
        const parts = syncParts(pods, containers);
        for (const [i, part] of parts.entries()) {
          const more = i < parts.length - 1;
          const rpl = await p.api.synchronize({ ...part, more }, { timeoutMs: this.opts.requestTimeoutMs });
          if (more && !rpl.more) {
            throw new FailedPreconditionError(
              `NRI plugin ${p.label} does not take Synchronize in parts, and this node's pods and containers need ${parts.length}`,
            );
          }
          if (rpl.update.length > 0) {
            throw new UnimplementedError(
              `NRI plugin ${p.label} asked for container updates in Synchronize, which berth cannot apply`,
            );
          }
        }
        if (p.closed) return;
        this.plugins = [...this.plugins, p].sort((a, b) => a.idx.localeCompare(b.idx) || a.name.localeCompare(b.name));
        this.pending.delete(p);
        log.info(
          { plugin: p.label, events: p.events, pods: pods.length, containers: containers.length },
          "NRI plugin synchronized",
        );
      });
    } catch (err) {
      log.warn({ err, plugin: p.label }, "NRI plugin refused");
      p.close();
    }
  }

  blockSync<T>(fn: () => Promise<T>): Promise<T> {
    return this.lock.shared(fn);
  }

  subscribed(event: Event): boolean {
    if (this.pending.size > 0) return true;
    return this.plugins.some((p) => !p.closed && p.subscribed(event));
  }

  /**
   * Calls `fn` for each plugin subscribed to `event`, in order. A broken plugin (timed out,
   * gone) is closed and skipped; a plugin's error fails the operation when `mayFail`, else it
   * is logged.
   */
  private async each(event: Event, what: string, mayFail: boolean, fn: (p: NriPlugin) => Promise<void>): Promise<void> {
    for (const p of this.plugins) {
      if (p.closed || !p.subscribed(event)) continue;
      try {
        await fn(p);
      } catch (err) {
        const msg = (err as Error).message;
        if (err instanceof DeadlineExceededError || (err instanceof UnavailableError && p.closed)) {
          this.opts.log.error({ err, plugin: p.label }, `NRI plugin did not handle ${what}: closing it`);
          p.close();
          continue;
        }
        // Not the plugin's answer but berth refusing what the plugin asked (adjust.ts): as is.
        if (!(typeof err === "object" && err !== null && "grpcCode" in err)) throw err;
        if (!mayFail) {
          this.opts.log.warn({ err, plugin: p.label }, `NRI plugin failed ${what}`);
          continue;
        }
        throw new FailedPreconditionError(`NRI plugin ${p.label} failed ${what}: ${msg}`, { cause: err });
      }
    }
  }

  private get timeout() {
    return { timeoutMs: this.opts.requestTimeoutMs };
  }

  async runPodSandbox(pod: PodSandbox): Promise<void> {
    await this.each(Event.RUN_POD_SANDBOX, "RunPodSandbox", true, async (p) => {
      await p.api.runPodSandbox({ pod }, this.timeout);
    });
  }

  async stopPodSandbox(pod: PodSandbox): Promise<void> {
    await this.each(Event.STOP_POD_SANDBOX, "StopPodSandbox", false, async (p) => {
      await p.api.stopPodSandbox({ pod }, this.timeout);
    });
  }

  async removePodSandbox(pod: PodSandbox): Promise<void> {
    await this.each(Event.REMOVE_POD_SANDBOX, "RemovePodSandbox", false, async (p) => {
      await p.api.removePodSandbox({ pod }, this.timeout);
    });
  }

  async createContainer(pod: PodSandbox, base: Container, spec: Spec): Promise<AdjustmentRest> {
    const cdiDevices: string[] = [];
    const pristine = containerFromSpec({ ...base, state: ContainerState.CONTAINER_UNKNOWN }, spec);
    const adjustments: ContainerAdjustment[] = [];
    const consulted: { name: string; index: string }[] = [];
    await this.each(Event.CREATE_CONTAINER, "CreateContainer", true, async (p) => {
      consulted.push({ name: p.name, index: p.idx });
      const container = containerFromSpec({ ...base, state: ContainerState.CONTAINER_UNKNOWN }, spec);
      const rpl = await p.api.createContainer({ pod, container }, this.timeout);
      if (rpl.update.length > 0 || rpl.evict.length > 0) {
        throw new UnimplementedError(
          `NRI plugin ${p.label} asked, in CreateContainer, to update or evict other containers, which berth cannot apply`,
        );
      }
      if (rpl.adjust) {
        cdiDevices.push(...applyAdjustment(spec, rpl.adjust, p.label).cdiDevices);
        adjustments.push(rpl.adjust);
      }
    });
    await this.validate(pod, pristine, mergeAdjustments(adjustments), consulted);
    return { cdiDevices };
  }

  /**
   * Validator plugins (subscribed to VALIDATE_CONTAINER_ADJUSTMENT) see the container as it was
   * and everything the others adjusted, and may reject it. Unlike other plugins, one that fails
   * to answer fails the create: skipping it would let unvalidated adjustments through.
   */
  private async validate(
    pod: PodSandbox,
    container: Container,
    adjust: ContainerAdjustment,
    plugins: { name: string; index: string }[],
  ): Promise<void> {
    for (const p of this.plugins) {
      if (p.closed || !p.subscribed(Event.VALIDATE_CONTAINER_ADJUSTMENT)) continue;
      let rpl;
      try {
        rpl = await p.api.validateContainerAdjustment(
          { pod, container, adjust, update: [], owners: { owners: {} }, plugins },
          this.timeout,
        );
      } catch (err) {
        if (err instanceof DeadlineExceededError) p.close();
        throw new FailedPreconditionError(
          `NRI validator plugin ${p.label} failed to validate container ${container.id}: ${(err as Error).message}`,
          { cause: err },
        );
      }
      if (rpl.reject) {
        throw new FailedPreconditionError(
          `NRI validator plugin ${p.label} rejected the adjustments of container ${container.id}: ${rpl.reason}`,
        );
      }
    }
  }

  async postCreateContainer(pod: PodSandbox, container: Container): Promise<void> {
    await this.each(Event.POST_CREATE_CONTAINER, "PostCreateContainer", false, async (p) => {
      await p.api.postCreateContainer({ pod, container }, this.timeout);
    });
  }

  async startContainer(pod: PodSandbox, container: Container): Promise<void> {
    await this.each(Event.START_CONTAINER, "StartContainer", true, async (p) => {
      await p.api.startContainer({ pod, container }, this.timeout);
    });
  }

  async postStartContainer(pod: PodSandbox, container: Container): Promise<void> {
    await this.each(Event.POST_START_CONTAINER, "PostStartContainer", false, async (p) => {
      await p.api.postStartContainer({ pod, container }, this.timeout);
    });
  }

  async updateContainer(pod: PodSandbox, container: Container, resources: Resources): Promise<void> {
    await this.each(Event.UPDATE_CONTAINER, "UpdateContainer", true, async (p) => {
      const linuxResources = resourcesToNri(resources);
      const rpl = await p.api.updateContainer({ pod, container, linuxResources }, this.timeout);
      for (const u of rpl.update) {
        if (u.containerId !== container.id || rpl.evict.length > 0) {
          throw new UnimplementedError(
            `NRI plugin ${p.label} asked, in UpdateContainer, to update or evict other containers, which berth cannot apply`,
          );
        }
        if (u.linux?.resources) applyNriResources(resources, u.linux.resources, p.label);
      }
    });
  }

  async postUpdateContainer(pod: PodSandbox, container: Container): Promise<void> {
    await this.each(Event.POST_UPDATE_CONTAINER, "PostUpdateContainer", false, async (p) => {
      await p.api.postUpdateContainer({ pod, container }, this.timeout);
    });
  }

  async stopContainer(pod: PodSandbox, container: Container): Promise<void> {
    await this.each(Event.STOP_CONTAINER, "StopContainer", false, async (p) => {
      const rpl = await p.api.stopContainer({ pod, container }, this.timeout);
      if (rpl.update.length > 0) {
        this.opts.log.error(
          { plugin: p.label, container: container.id },
          "NRI plugin asked for container updates in StopContainer, which berth cannot apply: ignored",
        );
      }
    });
  }

  async removeContainer(pod: PodSandbox, container: Container): Promise<void> {
    await this.each(Event.REMOVE_CONTAINER, "RemoveContainer", false, async (p) => {
      await p.api.removeContainer({ pod, container }, this.timeout);
    });
  }
}
