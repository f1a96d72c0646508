// berth's own gRPC server on its own HTTP/2 connection (src/cri/transport/grpc-server.ts)
// answering Version through the same wrapper berthd uses (cri/server.ts implementService),
// nothing else: beside bare-h2-version-server.ts (a bare gRPC answer on node:http2) it shows
// what berth's transport and wrapper cost without node:http2.
//   node dist/bench/lib/berth-own-version-server.js SOCKET      prints "ready"; exits on SIGTERM
import { RuntimeServiceService, VersionResponse } from "../../src/gen/cri/runtime/v1/api.js";
import { implementService } from "../../src/cri/server.js";
import { BerthGrpcServer } from "../../src/cri/transport/grpc-server.js";
import { silentLogger } from "../../src/util/log.js";

const socket = process.argv[2];
if (!socket) throw new Error("usage: berth-own-version-server.js SOCKET");
const log = silentLogger();
const server = new BerthGrpcServer({ log, maxRecvMessageSize: 16 << 20, maxSendMessageSize: 16 << 20 });
const handlers = {
  version: async () =>
    VersionResponse.fromPartial({
      version: "0.1.0",
      runtimeName: "berth",
      runtimeVersion: "0.1.0",
      runtimeApiVersion: "v1",
    }),
};
server.addService(RuntimeServiceService, implementService(RuntimeServiceService, handlers, { log }));
await server.listen(socket);
process.stdout.write("ready\n");
process.once("SIGTERM", () => process.exit(0));
