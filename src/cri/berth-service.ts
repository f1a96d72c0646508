// berth.v1.Berth: berth's own gRPC service, served on the CRI socket next to the CRI services
// (proto/berth/v1/berth.proto). It carries what the CRI has no room for and the berth CLI
// needs: pull progress, image archives (load / save / import) and a daemon summary. It is a
// thin translation onto the image service; methods whose backend is missing answer
// UNIMPLEMENTED naming what is missing, like the CRI server does.

import * as grpc from "@grpc/grpc-js";
import { PassThrough, Readable, Writable } from "node:stream";
import {
  ArchiveChunk,
  BerthService,
  ImportImageResponse,
  InfoResponse,
  LoadImagesResponse,
  PullImageProgress,
  type ImportImageRequest,
  type PullImageRequest,
  type SaveImagesRequest,
} from "../gen/berth/v1/berth.js";
import { exportArchive, importArchive, importRootfs } from "../images/archive.js";
import type { AuthConfig } from "../images/auth.js";
import type { ImageRuntimeConfig } from "../images/mediatypes.js";
import { parsePlatform } from "../images/platform.js";
import type { FsUsage, ImageRecord, ImageService, PullProgress } from "../images/service.js";
import { InvalidArgumentError, NotFoundError, UnimplementedError } from "../util/errors.js";
import type { Logger } from "../util/log.js";
import { codeName, isExpected, toGrpcStatus } from "./status.js";

/** The part of images/service.ts ImageService this service uses. */
export interface BerthImages {
  pull(
    ref: string,
    auth?: AuthConfig,
    opts?: { onProgress?: (p: PullProgress) => void; platform?: ReturnType<typeof parsePlatform> },
  ): Promise<ImageRecord>;
  list(): Promise<ImageRecord[]>;
  fsUsage(): Promise<FsUsage>;
}

/** Image archive import/export (docker-archive, OCI layout, plain rootfs tarballs). */
export interface BerthArchives {
  /** Reads a `docker save` archive or an OCI layout tar; resolves to the names (or ids) loaded. */
  load(source: Readable, signal: AbortSignal): Promise<string[]>;
  /** Writes the images as a tar ("docker" archive or "oci" layout) to `out`, then ends it. */
  save(images: string[], format: "docker" | "oci", out: Writable, signal: AbortSignal): Promise<void>;
  /** Makes a single-layer image from a filesystem tarball. */
  importRootfs(
    source: Readable,
    opts: { reference: string; changes: string[] },
    signal: AbortSignal,
  ): Promise<{ id: string; ref: string }>;
}

/** Static facts about the daemon for Info (everything but live counts and usage). */
export type DaemonSummary = Omit<InfoResponse, "images" | "content" | "snapshots">;

export interface BerthServiceDeps {
  log: Logger;
  summary: () => DaemonSummary;
  images?: BerthImages;
  archives?: BerthArchives;
}

/** Progress events for one layer are sent at most this often; phase changes always go out. */
const PROGRESS_INTERVAL_MS = 100;
/** Archive bytes per streamed message (well under the 16 MiB message limit). */
const CHUNK = 1024 * 1024;

const service = "berth.v1.Berth";

function need<T>(what: T | undefined, method: string, missing: string): T {
  if (!what) throw new UnimplementedError(`${service}/${method} is not available: this berthd has no ${missing}`);
  return what;
}

function signalOf(call: { cancelled: boolean; once(ev: "cancelled", fn: () => void): unknown }): AbortSignal {
  const ac = new AbortController();
  if (call.cancelled) ac.abort();
  else call.once("cancelled", () => ac.abort(new Error("call cancelled by the client")));
  return ac.signal;
}

function logged(log: Logger, method: string, started: bigint, err?: unknown): void {
  const durationMs = Number(process.hrtime.bigint() - started) / 1e6;
  if (err === undefined) log.debug({ method, code: "OK", durationMs }, "berth call");
  else if (isExpected(err))
    log.debug({ method, code: codeName(toGrpcStatus(err, method).code), durationMs, error: String(err) }, "berth call");
  else log.error({ method, durationMs, err }, "berth call failed");
}

/** Writes `msg` to a server stream, waiting for drain when grpc-js buffers too much. */
function writeTo<T>(call: grpc.ServerWritableStream<unknown, T>, msg: T, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    if (call.write(msg)) return resolve();
    call.once("drain", () => resolve());
  });
}

/** The bytes of a client stream of {data} messages, as a Readable; `first` receives message 0. */
function incoming<M extends { data: Buffer }>(
  call: grpc.ServerReadableStream<M, unknown>,
  first?: (m: M) => void,
): Readable {
  const out = new PassThrough({ highWaterMark: 4 * CHUNK });
  let n = 0;
  call.on("data", (m: M) => {
    if (n++ === 0) first?.(m);
    if (m.data.length > 0 && !out.write(m.data)) {
      call.pause();
      out.once("drain", () => call.resume());
    }
  });
  call.once("end", () => out.end());
  call.once("error", (err) => out.destroy(err));
  return out;
}

export function authFrom(req: PullImageRequest): AuthConfig | undefined {
  if (!req.username && !req.password && !req.auth) return undefined;
  return { username: req.username || undefined, password: req.password || undefined, auth: req.auth || undefined };
}

/** The grpc-js implementation of berth.v1.Berth. */
export function berthServiceImplementation(deps: BerthServiceDeps): grpc.UntypedServiceImplementation {
  const log = deps.log.child({ component: "berth-service" });

  const pullImage = (call: grpc.ServerWritableStream<PullImageRequest, PullImageProgress>) => {
    const method = `${service}/PullImage`;
    const started = process.hrtime.bigint();
    const signal = signalOf(call);
    void (async () => {
      const images = need(deps.images, "PullImage", "image service");
      const req = call.request;
      if (!req.image) throw new InvalidArgumentError("PullImage: image reference is empty");
      const platform = req.platform ? parsePlatform(req.platform) : undefined;
      const last = new Map<string, { at: number; status: string }>();
      const onProgress = (p: PullProgress) => {
        if (signal.aborted || p.phase === "done") return;
        const digest = p.digest ?? "";
        const now = Date.now();
        const prev = last.get(digest);
        // Throttle byte counts per layer; a phase change or the final byte always goes out.
        if (prev && prev.status === p.phase && now - prev.at < PROGRESS_INTERVAL_MS && p.done !== p.total) return;
        last.set(digest, { at: now, status: p.phase });
        // Progress is advisory: never let a slow client stall the pull itself.
        call.write(
          PullImageProgress.fromPartial({
            status: p.phase,
            digest,
            total: BigInt(p.total ?? 0),
            done: BigInt(p.done ?? 0),
          }),
        );
      };
      const record = await images.pull(req.image, authFrom(req), { onProgress, platform });
      await writeTo(
        call,
        PullImageProgress.fromPartial({
          status: "done",
          digest: record.id,
          imageId: record.id,
          imageRef: record.repoTags[0] ?? record.repoDigests[0] ?? record.id,
        }),
        signal,
      );
    })().then(
      () => {
        logged(log, method, started);
        call.end();
      },
      (err: unknown) => {
        logged(log, method, started, err);
        call.emit("error", toGrpcStatus(err, method));
      },
    );
  };

  const info = (call: grpc.ServerUnaryCall<unknown, InfoResponse>, callback: grpc.sendUnaryData<InfoResponse>) => {
    const method = `${service}/Info`;
    const started = process.hrtime.bigint();
    void (async () => {
      const base = deps.summary();
      if (!deps.images) return InfoResponse.fromPartial(base);
      const [list, usage] = await Promise.all([deps.images.list(), deps.images.fsUsage()]);
      return InfoResponse.fromPartial({
        ...base,
        images: BigInt(list.length),
        content: {
          path: usage.content.path,
          usedBytes: BigInt(usage.content.size),
          inodesUsed: BigInt(usage.content.inodes),
        },
        snapshots: {
          path: usage.snapshots.path,
          usedBytes: BigInt(usage.snapshots.size),
          inodesUsed: BigInt(usage.snapshots.inodes),
        },
      });
    })().then(
      (res) => {
        logged(log, method, started);
        callback(null, res);
      },
      (err: unknown) => {
        logged(log, method, started, err);
        callback(toGrpcStatus(err, method));
      },
    );
  };

  const loadImages = (
    call: grpc.ServerReadableStream<ArchiveChunk, LoadImagesResponse>,
    callback: grpc.sendUnaryData<LoadImagesResponse>,
  ) => {
    const method = `${service}/LoadImages`;
    const started = process.hrtime.bigint();
    void (async () => {
      const archives = need(deps.archives, "LoadImages", "image archive support yet");
      const images = await archives.load(incoming(call), signalOf(call));
      return LoadImagesResponse.fromPartial({ images });
    })().then(
      (res) => {
        logged(log, method, started);
        callback(null, res);
      },
      (err: unknown) => {
        logged(log, method, started, err);
        callback(toGrpcStatus(err, method));
      },
    );
  };

  const saveImages = (call: grpc.ServerWritableStream<SaveImagesRequest, ArchiveChunk>) => {
    const method = `${service}/SaveImages`;
    const started = process.hrtime.bigint();
    const signal = signalOf(call);
    void (async () => {
      const archives = need(deps.archives, "SaveImages", "image archive support yet");
      const { images, format } = call.request;
      if (images.length === 0) throw new InvalidArgumentError("SaveImages: name at least one image");
      if (format !== "" && format !== "docker" && format !== "oci") {
        throw new InvalidArgumentError(`SaveImages: format must be "docker" or "oci", not ${JSON.stringify(format)}`);
      }
      const sink = new Writable({
        highWaterMark: CHUNK,
        write(chunk: Buffer, _enc, cb) {
          const sends: Promise<void>[] = [];
          for (let off = 0; off < chunk.length; off += CHUNK) {
            sends.push(writeTo(call, ArchiveChunk.fromPartial({ data: chunk.subarray(off, off + CHUNK) }), signal));
          }
          Promise.all(sends).then(() => cb(), cb);
        },
      });
      await archives.save(images, format === "oci" ? "oci" : "docker", sink, signal);
    })().then(
      () => {
        logged(log, method, started);
        call.end();
      },
      (err: unknown) => {
        logged(log, method, started, err);
        call.emit("error", toGrpcStatus(err, method));
      },
    );
  };

  const importImage = (
    call: grpc.ServerReadableStream<ImportImageRequest, ImportImageResponse>,
    callback: grpc.sendUnaryData<ImportImageResponse>,
  ) => {
    const method = `${service}/ImportImage`;
    const started = process.hrtime.bigint();
    void (async () => {
      const archives = need(deps.archives, "ImportImage", "image archive support yet");
      let head: ImportImageRequest | undefined;
      const gotHead = new Promise<void>((resolve) => call.once("data", () => resolve()));
      const source = incoming(call, (m) => (head = m));
      const ended = new Promise<void>((resolve) => call.once("end", () => resolve()));
      await Promise.race([gotHead, ended]);
      const r = await archives.importRootfs(
        source,
        { reference: head?.reference ?? "", changes: head?.changes ?? [] },
        signalOf(call),
      );
      return ImportImageResponse.fromPartial({ imageId: r.id, imageRef: r.ref });
    })().then(
      (res) => {
        logged(log, method, started);
        callback(null, res);
      },
      (err: unknown) => {
        logged(log, method, started, err);
        callback(toGrpcStatus(err, method));
      },
    );
  };

  return { pullImage, info, loadImages, saveImages, importImage };
}

/** A Dockerfile-style instruction list (`docker import --change`) applied to an empty config. */
export function configFromChanges(changes: string[]): ImageRuntimeConfig {
  const config: ImageRuntimeConfig = {};
  const argv = (rest: string): string[] => {
    if (rest.startsWith("[")) {
      const v = JSON.parse(rest) as unknown;
      if (!Array.isArray(v) || !v.every((x) => typeof x === "string"))
        throw new InvalidArgumentError(`--change: ${rest} is not a JSON string array`);
      return v;
    }
    return ["/bin/sh", "-c", rest];
  };
  for (const change of changes) {
    const m = /^\s*([A-Za-z]+)\s+(.*)$/s.exec(change);
    if (!m) throw new InvalidArgumentError(`--change ${JSON.stringify(change)}: expected INSTRUCTION ARGUMENTS`);
    const [, instr, rest] = m;
    try {
      switch (instr.toUpperCase()) {
        case "CMD":
          config.Cmd = argv(rest);
          break;
        case "ENTRYPOINT":
          config.Entrypoint = argv(rest);
          break;
        case "ENV": {
          const kv = rest.includes("=") ? rest.trim() : rest.trim().replace(/\s+/, "=");
          config.Env = [...(config.Env ?? []), kv];
          break;
        }
        case "WORKDIR":
          config.WorkingDir = rest.trim();
          break;
        case "USER":
          config.User = rest.trim();
          break;
        case "EXPOSE":
          for (const p of rest.trim().split(/\s+/))
            config.ExposedPorts = { ...config.ExposedPorts, [p.includes("/") ? p : `${p}/tcp`]: {} };
          break;
        case "LABEL": {
          const eq = rest.indexOf("=");
          if (eq < 1) throw new InvalidArgumentError(`--change LABEL ${rest}: expected KEY=VALUE`);
          config.Labels = {
            ...config.Labels,
            [rest.slice(0, eq).trim()]: rest
              .slice(eq + 1)
              .trim()
              .replace(/^"(.*)"$/, "$1"),
          };
          break;
        }
        case "STOPSIGNAL":
          config.StopSignal = rest.trim();
          break;
        default:
          throw new InvalidArgumentError(
            `--change: ${instr} is not supported (CMD, ENTRYPOINT, ENV, WORKDIR, USER, EXPOSE, LABEL, STOPSIGNAL are)`,
          );
      }
    } catch (err) {
      if (err instanceof SyntaxError)
        throw new InvalidArgumentError(`--change ${JSON.stringify(change)}: ${err.message}`);
      throw err;
    }
  }
  return config;
}

/** BerthArchives on top of images/archive.ts. One archive layout serves both formats: an OCI
 * layout that also carries Docker's manifest.json, so `docker load` takes it too. */
export function imageArchives(images: ImageService): BerthArchives {
  return {
    async load(source) {
      const records = await importArchive(images, source);
      return records.map((r) => r.repoTags[0] ?? r.id);
    },
    async save(refs, _format, out) {
      for (const ref of refs) {
        if (!(await images.status(ref))) throw new NotFoundError(`image ${JSON.stringify(ref)} not found`);
      }
      await exportArchive(images, refs, out);
    },
    async importRootfs(source, opts) {
      const ref = opts.reference || `import:${new Date().toISOString().replace(/[-:T]/g, "").slice(0, 14)}`;
      const r = await importRootfs(images, source, ref, { config: configFromChanges(opts.changes) });
      return { id: r.id, ref: r.repoTags[0] ?? ref };
    },
  };
}

/** What the CRI server registers next to the CRI services (see server.ts ExtraService). */
export function berthService(deps: BerthServiceDeps): {
  definition: grpc.ServiceDefinition;
  implementation: grpc.UntypedServiceImplementation;
} {
  return { definition: BerthService, implementation: berthServiceImplementation(deps) };
}
