// A bare gRPC server written directly on node:http2 answering the CRI Version call and nothing
// else: what a lean transport could cost without @grpc/grpc-js (issue 15 item 5), beside
// bare-version-server.ts (grpc-js). Reads the request's DATA, decodes the 5-byte gRPC message
// prefix, answers headers + one DATA frame + trailers with grpc-status. No deadlines, no
// metadata, no size limits: the floor, not a server.
//   node dist/bench/lib/bare-h2-version-server.js SOCKET      prints "ready"; exits on SIGTERM
import { createServer, type ServerHttp2Stream } from "node:http2";
import { VersionRequest, VersionResponse } from "../../src/gen/cri/runtime/v1/api.js";

const socket = process.argv[2];
if (!socket) throw new Error("usage: bare-h2-version-server.js SOCKET");

const RESPONSE_HEADERS = { ":status": 200, "content-type": "application/grpc" };
const OK_TRAILERS = { "grpc-status": "0" };

function answer(stream: ServerHttp2Stream, body: Buffer): void {
  VersionRequest.decode(body.subarray(5));
  const msg = VersionResponse.encode(
    VersionResponse.fromPartial({
      version: "0.1.0",
      runtimeName: "berth",
      runtimeVersion: "0.1.0",
      runtimeApiVersion: "v1",
    }),
  ).finish();
  const out = Buffer.allocUnsafe(5 + msg.length);
  out[0] = 0;
  out.writeUInt32BE(msg.length, 1);
  out.set(msg, 5);
  stream.respond(RESPONSE_HEADERS, { waitForTrailers: true });
  stream.once("wantTrailers", () => stream.sendTrailers(OK_TRAILERS));
  stream.end(out);
}

const server = createServer();
server.on("stream", (stream) => {
  let first: Buffer | undefined;
  let chunks: Buffer[] | undefined;
  stream.on("data", (c: Buffer) => {
    if (first === undefined) first = c;
    else (chunks ??= [first]).push(c);
  });
  stream.on("end", () => answer(stream, chunks ? Buffer.concat(chunks) : (first ?? Buffer.alloc(5))));
  stream.on("error", () => {});
});
server.listen(socket, () => process.stdout.write("ready\n"));
process.once("SIGTERM", () => process.exit(0));
