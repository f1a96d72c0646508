// The composition root: builds every service berthd runs from the configuration and hands
// each its dependencies explicitly (DESIGN.md principle 6). Nothing else in the daemon
// constructs services, so this file is the map of what depends on what.
//
// To land a CRI method, write a module in src/cri/ that exports a function returning
// Partial<RuntimeHandlers> (or Partial<ImageHandlers>) built from its dependencies, build
// those dependencies here, and spread its handlers into `runtime` / `image` below. A later
// spread wins, so a real handler replaces the UNIMPLEMENTED default by name.

import { berthService, type DaemonSummary } from "../cri/berth-service.js";
import { cniConfigProbe } from "../cri/network-status.js";
import type { CriHandlers } from "../cri/handlers.js";
import { imageServiceHandlers } from "../cri/image-service.js";
import { runtimeInfoHandlers } from "../cri/runtime-service.js";
import type { Logger } from "../util/log.js";
import type { BerthConfig } from "./config.js";
import { BERTH_VERSION } from "./version.js";

export interface Services {
  /** The CRI handlers the gRPC server serves. */
  cri: CriHandlers;
  /** Releases what compose() opened (stores, servers, watchers), in reverse order of opening. */
  close(): Promise<void>;
}

/** The static part of `berth info`. */
function daemonSummary(config: BerthConfig, startedAt: bigint): DaemonSummary {
  const handlers = Object.entries(config.runtime.handlers);
  return {
    version: BERTH_VERSION,
    root: config.root,
    state: config.state,
    address: config.grpc.address,
    cgroupDriver: config.cgroup.driver,
    snapshotter: config.image.snapshotter,
    runtimes: handlers.map(([name, h]) => ({
      name,
      runtimeType: h.runtime_type,
      binaryName: h.binary_name,
      default: name === config.runtime.default_runtime_name,
    })),
    cniConfDir: config.cni.conf_dir,
    cniBinDir: config.cni.bin_dir,
    sandboxImage: config.image.sandbox_image,
    registryConfigPath: config.registry.config_path,
    pid: BigInt(process.pid),
    startedAt,
    logLevel: config.log.level,
  };
}

export async function compose(config: BerthConfig, log: Logger): Promise<Services> {
  const startedAt = BigInt(Date.now()) * 1_000_000n;
  // Each opened resource pushes its closer; close() runs them last-in first-out.
  const closers: (() => Promise<void> | void)[] = [];
  const close = async () => {
    for (const c of closers.reverse()) {
      try {
        await c();
      } catch (err) {
        log.error({ err }, "error while closing a service");
      }
    }
  };

  try {
    const network = cniConfigProbe({
      confDir: config.cni.conf_dir,
      binDir: config.cni.bin_dir,
      maxConfNum: config.cni.max_conf_num,
    });

    const cri: CriHandlers = {
      runtime: {
        ...runtimeInfoHandlers({
          version: BERTH_VERSION,
          cgroupDriver: config.cgroup.driver,
          runtimeHandlers: Object.keys(config.runtime.handlers),
          defaultRuntimeHandler: config.runtime.default_runtime_name,
          network,
          effectiveConfig: () => config,
        }),
      },
      image: {
        ...imageServiceHandlers({}),
      },
      // berth.v1.Berth for the CLI (pull progress, archives, info). Pass `images` (the
      // images/service.ts ImageService) and `archives` once they are built here.
      extra: [
        berthService({
          log,
          summary: () => daemonSummary(config, startedAt),
          images: undefined,
          archives: undefined,
        }),
      ],
    };
    return { cri, close };
  } catch (err) {
    await close();
    throw err;
  }
}
