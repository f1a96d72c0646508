// A bare grpc-js server answering the CRI Version call and nothing else, on grpc-js's own unix
// listener, in a process of its own: the floor version.bench.ts (--bare) sets berthd's Version
// beside (issue 15: within 0.03 ms of it). The response is berthd's, built the same way.
//   node dist/bench/lib/bare-version-server.js SOCKET      prints "ready"; exits on SIGTERM
import * as grpc from "@grpc/grpc-js";
import { RuntimeServiceService, VersionResponse } from "../../src/gen/cri/runtime/v1/api.js";

const socket = process.argv[2];
if (!socket) throw new Error("usage: bare-version-server.js SOCKET");
const server = new grpc.Server();
server.addService(RuntimeServiceService, {
  version: (_call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<VersionResponse>) =>
    cb(
      null,
      VersionResponse.fromPartial({
        version: "0.1.0",
        runtimeName: "berth",
        runtimeVersion: "0.1.0",
        runtimeApiVersion: "v1",
      }),
    ),
});
server.bindAsync(`unix://${socket}`, grpc.ServerCredentials.createInsecure(), (err) => {
  if (err) throw err;
  process.stdout.write("ready\n");
});
process.once("SIGTERM", () => server.forceShutdown());
