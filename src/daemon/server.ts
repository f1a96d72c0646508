// berthd's lifecycle: claim directories, state and socket; build the services; serve the CRI;
// on stop, drain calls and release everything it claimed. Startup refusals (another daemon,
// a path in the way) throw DaemonConflictError with a message meant for the operator.

import { lstatSync, mkdirSync, unlinkSync } from "node:fs";
import { dirname, join } from "node:path";
import { createCriServer, type CriGrpcServer, serveUnix, shutdownServer, type UnixListener } from "../cri/server.js";
import type { Logger } from "../util/log.js";
import { parseDuration } from "./config-fields.js";
import type { BerthConfig } from "./config.js";
import { compose, type Services } from "./compose.js";
import { ensurePrivateDir, noteStateFileSystem } from "./dirs.js";
import { PidFile } from "./pidfile.js";
import { claimSocketPath, setSocketAccess } from "./socket.js";
import { BERTH_VERSION } from "../util/version.js";

export const PID_FILE = "berthd.pid";

export class Daemon {
  private stopping: Promise<void> | undefined;

  private constructor(
    readonly config: BerthConfig,
    private readonly log: Logger,
    private readonly pidFile: PidFile,
    private readonly services: Services,
    private readonly server: CriGrpcServer,
    private readonly listener: UnixListener,
    /** Inode of the socket we bound, so stop() never removes a successor's socket. */
    private readonly socketIno: number,
  ) {}

  static async start(config: BerthConfig, log: Logger): Promise<Daemon> {
    const undo: (() => Promise<void> | void)[] = [];
    try {
      ensurePrivateDir(config.root, 0o700, log);
      ensurePrivateDir(config.state, 0o711, log);
      noteStateFileSystem(config.state, log);
      const pidFile = PidFile.acquire(join(config.state, PID_FILE), log);
      undo.push(() => pidFile.release());

      const address = config.grpc.address;
      // The socket's directory may be shared (/run, /tmp): create it if missing, never chmod it.
      mkdirSync(dirname(address), { recursive: true, mode: 0o711 });
      await claimSocketPath(address, log);

      const services = await compose(config, log);
      undo.push(() => services.close());

      const server = createCriServer(services.cri, {
        log,
        maxRecvMessageSize: config.grpc.max_recv_message_size,
        maxSendMessageSize: config.grpc.max_send_message_size,
        server: config.grpc.server,
      });
      // Bind under a strict umask so the socket is never reachable with looser bits than configured.
      // berth's own listener hands connections to the gRPC server and accepts any :authority (kubelet 1.26).
      const oldMask = process.umask(0o177);
      let listener: UnixListener;
      try {
        listener = await serveUnix(server, address, log);
      } finally {
        process.umask(oldMask);
      }
      undo.push(() => {
        listener.close();
        server.forceShutdown();
        listener.destroyAll();
      });
      const socketIno = lstatSync(address).ino;
      undo.push(() => removeSocket(address, socketIno));
      setSocketAccess(address, { mode: config.grpc.mode, uid: config.grpc.uid, gid: config.grpc.gid });

      log.info(
        { address, root: config.root, state: config.state, version: BERTH_VERSION, grpcServer: config.grpc.server },
        "berthd serving CRI",
      );
      return new Daemon(config, log, pidFile, services, server, listener, socketIno);
    } catch (err) {
      for (const u of undo.reverse()) {
        try {
          await u();
        } catch {
          // best effort: the original error matters more
        }
      }
      throw err;
    }
  }

  /** Stops accepting calls, lets in-flight ones finish (up to grpc.shutdown_timeout), releases everything. */
  stop(reason: string): Promise<void> {
    this.stopping ??= (async () => {
      const graceMs = parseDuration(this.config.grpc.shutdown_timeout) ?? 5000;
      this.log.info({ reason, graceMs }, "berthd shutting down");
      const how = await shutdownServer(this.server, graceMs, this.listener);
      if (how === "forced") this.log.warn({ graceMs }, "in-flight CRI calls cut off at shutdown");
      await this.services.close();
      removeSocket(this.config.grpc.address, this.socketIno);
      this.pidFile.release();
      this.log.info("berthd stopped");
    })();
    return this.stopping;
  }
}

function removeSocket(path: string, ino: number): void {
  try {
    if (lstatSync(path).ino === ino) unlinkSync(path);
  } catch {
    // already gone
  }
}
