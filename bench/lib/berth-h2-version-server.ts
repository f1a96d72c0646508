// berth's own gRPC server (src/cri/transport/h2-grpc-server.ts) answering Version through the
// same wrapper berthd uses (cri/server.ts implementService), nothing else: beside
// bare-h2-version-server.ts it shows what the transport and the wrapper add to node:http2.
//   node dist/bench/lib/berth-h2-version-server.js SOCKET      prints "ready"; exits on SIGTERM
import { RuntimeServiceService, VersionResponse } from "../../src/gen/cri/runtime/v1/api.js";
import { implementService } from "../../src/cri/server.js";
import { H2GrpcServer } from "../../src/cri/transport/h2-grpc-server.js";
import { silentLogger } from "../../src/util/log.js";

const socket = process.argv[2];
if (!socket) throw new Error("usage: berth-h2-version-server.js SOCKET");
const log = silentLogger();
const server = new H2GrpcServer({ log, maxRecvMessageSize: 16 << 20, maxSendMessageSize: 16 << 20 });
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
