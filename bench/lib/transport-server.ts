// One transport's server for the transport comparison, run as its own process so its RSS is
// its own: `node dist/bench/lib/transport-server.js KIND ADDRESS`. Every kind answers the same
// two CRI calls with the same messages (transport-payloads.ts), encoding the answer per call
// as a real runtime would: ContainerStatus (small) and ListContainers (large).
//   grpc   grpc-js server on a unix socket (as berthd's CRI server)
//   ttrpc  berth's ttrpc server (src/ttrpc, as the shim's)
//   http   node:http, JSON bodies (protobuf's JSON mapping), POST /runtime.v1/ContainerStatus
//   redis  workers taking requests off a Redis list and pushing each answer to its reply list
// Prints "ready" once serving; exits on SIGTERM.
import * as grpc from "@grpc/grpc-js";
import { createServer } from "node:http";
import { rm } from "node:fs/promises";
import {
  ContainerStatusRequest,
  ContainerStatusResponse,
  ListContainersResponse,
  RuntimeServiceService,
} from "../../src/gen/cri/runtime/v1/api.js";
import { TtrpcServer } from "../../src/ttrpc/index.js";
import { RespClient } from "./resp.js";
import { GRPC_MAX, REDIS_WORKERS, REQUEST_LIST, TtrpcCri, largeResponse, smallResponse } from "./transport-payloads.js";

const small = smallResponse();
const large = largeResponse();

async function serve(kind: string, addr: string): Promise<() => Promise<void>> {
  switch (kind) {
    case "grpc": {
      const server = new grpc.Server({
        "grpc.max_receive_message_length": GRPC_MAX,
        "grpc.max_send_message_length": GRPC_MAX,
      });
      server.addService(RuntimeServiceService, {
        containerStatus: (_c: unknown, cb: grpc.sendUnaryData<ContainerStatusResponse>) => cb(null, small),
        listContainers: (_c: unknown, cb: grpc.sendUnaryData<ListContainersResponse>) => cb(null, large),
      } as unknown as grpc.UntypedServiceImplementation);
      await new Promise<void>((resolve, reject) =>
        server.bindAsync(`unix://${addr}`, grpc.ServerCredentials.createInsecure(), (e) => (e ? reject(e) : resolve())),
      );
      return () => new Promise((r) => server.tryShutdown(() => r()));
    }
    case "ttrpc": {
      const server = new TtrpcServer();
      server.register(TtrpcCri, { containerStatus: () => small, listContainers: () => large });
      await server.listen(addr);
      return () => server.close({ timeoutMs: 1000 });
    }
    case "http": {
      const server = createServer((req, res) => {
        const chunks: Buffer[] = [];
        req.on("data", (c: Buffer) => chunks.push(c));
        req.on("end", () => {
          let body: string;
          if (req.url === "/runtime.v1/ContainerStatus") {
            ContainerStatusRequest.fromJSON(JSON.parse(Buffer.concat(chunks).toString() || "{}"));
            body = JSON.stringify(ContainerStatusResponse.toJSON(small));
          } else if (req.url === "/runtime.v1/ListContainers") {
            body = JSON.stringify(ListContainersResponse.toJSON(large));
          } else {
            res.writeHead(404).end();
            return;
          }
          res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
          res.end(body);
        });
      });
      server.keepAliveTimeout = 600_000;
      server.maxConnections = 10_000;
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(addr, resolve);
      });
      return async () => {
        server.closeAllConnections();
        await new Promise((r) => server.close(r));
        await rm(addr, { force: true });
      };
    }
    case "redis": {
      // A request is LIST entry "<reply key>\0<method>\0<protobuf request>"; the answer is
      // pushed to <reply key>, which the caller blocks on.
      const workers = await Promise.all(Array.from({ length: REDIS_WORKERS }, () => RespClient.open(addr)));
      let stopping = false;
      const loop = async (c: RespClient) => {
        while (!stopping) {
          const r = (await c.command("BLPOP", REQUEST_LIST, "1").catch(() => null)) as Buffer[] | null;
          if (!r) continue;
          const msg = r[1]!;
          const a = msg.indexOf(0);
          const b = msg.indexOf(0, a + 1);
          const replyTo = msg.subarray(0, a);
          const method = msg.toString("latin1", a + 1, b);
          let out: Uint8Array;
          if (method === "ContainerStatus") {
            ContainerStatusRequest.decode(msg.subarray(b + 1));
            out = ContainerStatusResponse.encode(small).finish();
          } else out = ListContainersResponse.encode(large).finish();
          await c.command("LPUSH", replyTo, Buffer.from(out.buffer, out.byteOffset, out.byteLength));
        }
      };
      const loops = workers.map(loop);
      return async () => {
        stopping = true;
        await Promise.race([Promise.all(loops), new Promise((r) => setTimeout(r, 2000))]);
        for (const w of workers) w.close();
      };
    }
    default:
      throw new Error(`unknown transport ${kind}`);
  }
}

const [kind, addr] = process.argv.slice(2);
if (!kind || !addr) {
  process.stderr.write("usage: transport-server KIND ADDRESS\n");
  process.exit(2);
}
const stop = await serve(kind, addr);
process.stdout.write("ready\n");
process.on("SIGTERM", () => void stop().finally(() => process.exit(0)));
