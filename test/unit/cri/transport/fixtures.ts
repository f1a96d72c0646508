// What the tests of berth's gRPC server (grpc-server, h2-connection, h2-streams,
// h2-flow-control) share: a BerthGrpcServer on a fresh unix socket serving test handlers
// through berthd's own wrapper (cri/server.ts implementService), the method paths they call,
// a Version request body, and a handler's wait for its call's cancellation.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BerthService } from "../../../../src/gen/berth/v1/berth.js";
import { RuntimeServiceService, VersionRequest } from "../../../../src/gen/cri/runtime/v1/api.js";
import { implementService } from "../../../../src/cri/server.js";
import { encodeMessage } from "../../../../src/cri/transport/grpc-frame.js";
import { BerthGrpcServer } from "../../../../src/cri/transport/grpc-server.js";
import { silentLogger } from "../../../../src/util/log.js";

export const VERSION = "/runtime.v1.RuntimeService/Version";
export const EVENTS = "/runtime.v1.RuntimeService/GetContainerEvents";
export const LOAD = "/berth.v1.Berth/LoadImages";

/** A framed (5-byte prefix) VersionRequest with `version` set. */
export const versionBody = (version: string): Buffer =>
  encodeMessage(VersionRequest.encode(VersionRequest.fromPartial({ version })).finish());

/** Resolves with the signal's abort reason once the call is cancelled. */
export function onAbort(signal: AbortSignal): Promise<unknown> {
  return new Promise((resolve) =>
    signal.aborted ? resolve(signal.reason) : signal.addEventListener("abort", () => resolve(signal.reason)),
  );
}

export interface TestServer {
  /** The temp dir holding the socket (removed by stop). */
  dir: string;
  socket: string;
  server: BerthGrpcServer;
  /** Ends every connection and removes the socket's dir. */
  stop(): void;
}

/** Serves `runtime` (RuntimeService handlers) and `berth` (berth.v1 handlers) on a new socket. */
export async function serveForTest(
  prefix: string,
  limits: { maxRecvMessageSize: number; maxSendMessageSize: number },
  runtime: Record<string, unknown>,
  berth?: Record<string, unknown>,
): Promise<TestServer> {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const socket = join(dir, "s.sock");
  const server = new BerthGrpcServer({ log: silentLogger(), ...limits });
  const stop = () => {
    server.forceShutdown();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    server.addService(RuntimeServiceService, implementService(RuntimeServiceService, runtime, { log: silentLogger() }));
    if (berth)
      server.addService(BerthService, implementService(BerthService, berth, { log: silentLogger(), kind: "berth.v1" }));
    await server.listen(socket);
  } catch (err) {
    stop();
    throw err;
  }
  return { dir, socket, server, stop };
}
