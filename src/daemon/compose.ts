// The composition root: builds every service berthd runs from the configuration and hands
// each its dependencies explicitly (DESIGN.md principle 6). Nothing else in the daemon
// constructs services, so this file is the map of what depends on what.
//
// To land a CRI method, write a module in src/cri/ that exports a function returning
// Partial<CriMethodHandlers> (or Partial<ImageHandlers>) built from its dependencies, build
// those dependencies here, and spread its handlers into `runtime` / `image` below. A later
// spread wins, so a real handler replaces the UNIMPLEMENTED default by name.

import { berthService, lazyImageArchives, type DaemonSummary } from "../api/berth-service.js";
import { cniConfigProbe } from "../cri/network-status.js";
import type { CriHandlers } from "../cri/handlers.js";
import { imageServiceHandlers } from "../cri/image-service.js";
import { runtimeInfoHandlers } from "../cri/runtime-service.js";
import { probeAllHandlers } from "../cri/userns/probe.js";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { CriContext } from "../cri/context.js";
import { CriEvents } from "../cri/events.js";
import { createPodRuntime } from "../cri/pod-runtime.js";
import { ensureSandboxRootfs } from "../cri/sandbox-rootfs.js";
import { CriStreamingBackend } from "../cri/streaming-backend.js";
import { streamingHandlers } from "../cri/streaming-handlers.js";
import { streamListHandlers } from "../cri/stream-lists.js";
import { configuredCredentials } from "../images/credentials.js";
import { ImageService } from "../images/service.js";
import { ContainerMetadata, ShimRecordMetadata } from "../metadata/containers.js";
import { openDatabase } from "../metadata/db.js";
import { PodMetadata } from "../metadata/pods.js";
import { NetworkManager } from "../network/index.js";
import { RuntimeClasses, ShimManager } from "../runtime/index.js";
import { syncfs } from "../sys/index.js";
import { StreamingServer } from "../streaming/server.js";
import { containerStateToJSON, podSandboxStateToJSON } from "../gen/cri/runtime/v1/api.js";
import {
  isLoopback,
  listTracesHandler,
  Observability,
  OtlpExporter,
  parseHostPort,
  serveMetrics,
  type MetricsSources,
} from "../observability/index.js";
import type { Logger } from "../util/log.js";
import type { BerthConfig } from "./config.js";
import { parseDuration } from "./config-fields.js";
import { BERTH_VERSION } from "../util/version.js";
import { nriState } from "../cri/nri-view.js";

export interface Services {
  /** The CRI handlers the gRPC server serves. */
  cri: CriHandlers;
  /** The image service (pull, status, imageConfig, prepareRootfs, removeRootfs, gc) for other services. */
  images: ImageService;
  /** Releases what compose() opened (stores, servers, watchers), in reverse order of opening. */
  close(): Promise<void>;
}

/** The configuration as Status (verbose) shows it: registry credentials masked. */
function withoutSecrets(config: BerthConfig): BerthConfig {
  const mask = (v: string) => (v ? "<redacted>" : "");
  const auths = Object.fromEntries(
    Object.entries(config.registry.auths).map(([host, a]) => [
      host,
      { ...a, password: mask(a.password), auth: mask(a.auth), identity_token: mask(a.identity_token) },
    ]),
  );
  return { ...config, registry: { ...config.registry, auths } };
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

/** berth.v1.Berth with ListTraces served from the tracer. */
function withTraces(svc: ReturnType<typeof berthService>, obs: Observability): ReturnType<typeof berthService> {
  return { ...svc, implementation: { ...svc.implementation, listTraces: listTracesHandler(obs.tracer) } };
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

    // Pods and containers: the metadata store, images, CNI, shims, then recovery of what a
    // previous berthd left running (or half done) before the socket serves anything.
    // Metrics and traces (src/observability): CRI calls, core service calls and ttrpc calls to
    // shims become spans; gauges read their sources (filled in below) at scrape time.
    const metricSources: MetricsSources = {};
    // Metrics are kept only when an endpoint serves them (prom-client stays unloaded otherwise).
    const obs = new Observability({
      traceBufferSize: config.tracing.buffer_size,
      sources: metricSources,
      metrics: config.metrics.address !== "",
    });
    obs.instrumentTtrpc();
    closers.push(() => obs.close());
    if (config.tracing.otlp_endpoint) {
      const otlp = new OtlpExporter({
        endpoint: config.tracing.otlp_endpoint,
        onError: (err) => log.warn({ err: err.message }, "OTLP trace export failed"),
      });
      obs.tracer.addExporter(otlp.export);
      closers.push(() => otlp.flush());
    }

    const db = openDatabase(join(config.root, "metadata.db"));
    closers.push(() => {
      db.close();
    });
    const images = obs.countingPulls(
      await ImageService.create({
        root: config.root,
        db,
        snapshotter: config.image.snapshotter,
        registry: {
          configPath: config.registry.config_path,
          credentials: configuredCredentials(config.registry.auths),
        },
        maxConcurrentDownloads: config.image.max_concurrent_downloads,
        syncLayer: config.image.image_pull_with_sync_fs
          ? obs.traced({ syncfs }, "images", ["syncfs"]).syncfs
          : undefined,
        staleIngestMs: parseDuration(config.image.stale_ingest_timeout),
        pullProgressTimeoutMs: parseDuration(config.image.image_pull_progress_timeout),
        onGcError: (err) => log.warn({ err }, "image garbage collection failed"),
      }),
    );
    // Closers run in reverse: a background collection (after a RemoveImage) finishes before the
    // database closes, so a stop leaves no half-removed snapshot behind.
    closers.push(() => images.gcSettled());
    const tracedImages = obs.traced(images, "images", [
      "pull",
      "imageConfig",
      "prepareRootfs",
      "stageRootfs",
      "removeRootfs",
      "remove",
    ]);
    const podNetwork = new NetworkManager({
      stateDir: join(config.root, "network"),
      netnsDir: join(config.state, "netns"),
      confDir: config.cni.conf_dir,
      binDirs: [config.cni.bin_dir],
      maxConfNum: config.cni.max_conf_num,
    });
    await podNetwork.init();
    const shims = await ShimManager.create({
      stateDir: join(config.state, "runtime"),
      address: config.grpc.address,
      handlers: new RuntimeClasses(
        Object.fromEntries(
          Object.entries(config.runtime.handlers).map(([name, h]) => [
            name,
            {
              runtimeType: h.runtime_type,
              binaryName: h.binary_name,
              root: h.root,
              options: h.options as Record<string, unknown>,
            },
          ]),
        ),
        config.runtime.default_runtime_name,
      ),
      records: new ShimRecordMetadata(db),
      // A warm shim saves a Node start (~0.5-0.9 s) on the next pod; close() stops idle ones.
      keepIdleShims: true,
      // berth's shim keeps its sockets and monitors' state under berthd's state dir.
      shimEnv: { BERTH_SHIM_SOCKET_DIR: join(config.state, "shim") },
      logger: log.child({ component: "runtime" }),
    });
    closers.push(() => shims.close());
    // The OCI runtime commands the shim runs for a traced call come back as events: add them to the trace.
    obs.followShimSpans(shims);
    // What each handler's runtime (and, for user namespaces, the kernel) can do: announced by
    // Status and checked by RunPodSandbox.
    const handlerFeatures = await probeAllHandlers(
      Object.fromEntries(Object.entries(config.runtime.handlers).map(([n, h]) => [n, h.binary_name])),
      join(config.root, "probe"),
      log,
    );
    // NRI plugins (src/nri): wired into the CRI operations now, accepting plugins once recovery
    // has rebuilt the pods and containers they are synchronized with. Loaded only when enabled
    // (the default is off): the adaptation and the generated NRI code are about 0.8 MiB of heap.
    const nri = config.nri.enable
      ? new (await import("../nri/index.js")).NriAdaptation({
          socketPath: config.nri.socket_path,
          registrationTimeoutMs: parseDuration(config.nri.plugin_registration_timeout) ?? 5000,
          requestTimeoutMs: parseDuration(config.nri.plugin_request_timeout) ?? 2000,
          runtimeName: "berth",
          runtimeVersion: BERTH_VERSION,
          log: log.child({ component: "nri" }),
        })
      : undefined;
    const criContext: CriContext = {
      pods: new PodMetadata(db),
      containers: new ContainerMetadata(db),
      images: tracedImages,
      network: obs.traced(podNetwork, "network", ["setupPod", "teardownPod", "checkPod"]),
      shims: obs.traced(shims, "runtime", [
        "createTask",
        "start",
        "exec",
        "kill",
        "state",
        "pids",
        "pause",
        "resume",
        "update",
        "stats",
        "closeIO",
        "resizePty",
        "connect",
        "deleteProcess",
        "delete",
      ]),
      handlers: new RuntimeClasses(
        Object.fromEntries(
          Object.entries(config.runtime.handlers).map(([name, h]) => [
            name,
            { runtimeType: h.runtime_type, binaryName: h.binary_name, root: h.root },
          ]),
        ),
        config.runtime.default_runtime_name,
      ),
      events: new CriEvents(),
      log: log.child({ component: "cri-runtime" }),
      stateDir: config.state,
      sandboxRootfs: await ensureSandboxRootfs(config.root),
      cgroupDriver: config.cgroup.driver,
      cdiSpecDirs: config.cdi.spec_dirs,
      handlerFeatures,
      nri,
    };
    const podRuntime = createPodRuntime(criContext);
    closers.push(() => podRuntime.close());
    await podRuntime.recover();
    if (nri) {
      await nri.start(nriState(podRuntime.sandboxes.store, podRuntime.containers.store, config.cgroup.driver));
      // Closed before the pod runtime: plugins are told to shut down while berthd still answers.
      closers.push(() => nri.stop());
    }
    metricSources.shims = () => shims.shimCount;
    const countBy = <T>(items: T[], key: (x: T) => string) => {
      const out: Record<string, number> = {};
      for (const x of items) out[key(x)] = (out[key(x)] ?? 0) + 1;
      return out;
    };
    metricSources.pods = async () => countBy(podRuntime.listPodSandboxes(), (p) => podSandboxStateToJSON(p.state));
    metricSources.containers = async () =>
      countBy(await podRuntime.listContainers(), (c) => containerStateToJSON(c.state));
    if (obs.metrics) {
      const { host } = parseHostPort(config.metrics.address);
      if (!isLoopback(host))
        log.warn({ address: config.metrics.address }, "metrics endpoint is not on a loopback address");
      const metricsServer = await serveMetrics(obs.metrics, config.metrics.address);
      closers.push(() => metricsServer.close());
      log.info({ url: metricsServer.url }, "metrics endpoint listening");
    }

    // The exec/attach/port-forward server; stopped (its sessions aborted: exec processes
    // killed, attaches detached) before the pod runtime and the shims close.
    const streamingBackend = new CriStreamingBackend({
      containers: podRuntime.containers,
      sandboxes: podRuntime.sandboxes,
    });
    const streaming = new StreamingServer({
      address: config.streaming.address,
      port: config.streaming.port,
      tls: config.streaming.tls_cert_file
        ? { cert: readFileSync(config.streaming.tls_cert_file), key: readFileSync(config.streaming.tls_key_file) }
        : undefined,
      tokenTtlMs: parseDuration(config.streaming.token_ttl),
      backend: streamingBackend,
    });
    const streamingUrl = await streaming.start();
    closers.push(async () => {
      await streaming.stop();
      await streamingBackend.close();
    });
    log.info({ url: streamingUrl }, "streaming server listening");

    const cri: CriHandlers = {
      runtime: {
        ...podRuntime.handlers,
        ...streamingHandlers({ server: streaming, containers: podRuntime.containers, sandboxes: podRuntime.sandboxes }),
        ...runtimeInfoHandlers({
          version: BERTH_VERSION,
          cgroupDriver: config.cgroup.driver,
          runtimeHandlers: Object.keys(config.runtime.handlers),
          defaultRuntimeHandler: config.runtime.default_runtime_name,
          handlerFeatures,
          network,
          effectiveConfig: () => withoutSecrets(config),
        }),
      },
      image: {
        ...imageServiceHandlers({ images: tracedImages, log: log.child({ component: "cri-images" }) }),
      },
      // berth.v1.Berth for the CLI: pull progress, image archives, info.
      extra: [
        withTraces(
          berthService({
            log,
            summary: () => daemonSummary(config, startedAt),
            images,
            archives: lazyImageArchives(images),
          }),
          obs,
        ),
      ],
    };
    const streamLists = streamListHandlers(cri.runtime, cri.image);
    Object.assign(cri.runtime, streamLists.runtime);
    Object.assign(cri.image, streamLists.image);
    cri.observer = obs.cri;
    return { cri, images, close };
  } catch (err) {
    await close();
    throw err;
  }
}
