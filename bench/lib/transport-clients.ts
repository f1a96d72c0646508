// The Node clients of the transport comparison, one per kind. open() gives `callers` call
// functions: gRPC and ttrpc callers share one connection (as kubelet shares one CRI channel and
// containerd one ttrpc connection per shim); HTTP/1.1 callers each get a connection from one
// undici pool (HTTP/1.1 answers in order, so concurrency needs connections); Redis callers each
// own a connection, since a caller blocks on it waiting for its reply.
import * as grpc from "@grpc/grpc-js";
import { randomBytes } from "node:crypto";
import { Pool } from "undici";
import {
  ContainerStatusRequest,
  ContainerStatusResponse,
  ListContainersRequest,
  ListContainersResponse,
  RuntimeServiceClient,
} from "../../src/gen/cri/runtime/v1/api.js";
import { TtrpcClient, createClient } from "../../src/ttrpc/index.js";
import { RespClient } from "./resp.js";
import { GRPC_MAX, REQUEST_LIST, TtrpcCri, type Size } from "./transport-payloads.js";

export type Kind = "grpc" | "ttrpc" | "http" | "redis";
export type Call = () => Promise<unknown>;
export interface Opened {
  calls: Call[];
  close(): Promise<void>;
}

const statusReq = { containerId: "bench", verbose: false };

export function grpcClient(addr: string, ownConnection: boolean): InstanceType<typeof RuntimeServiceClient> {
  return new RuntimeServiceClient(`unix://${addr}`, grpc.credentials.createInsecure(), {
    "grpc.max_receive_message_length": GRPC_MAX,
    "grpc.max_send_message_length": GRPC_MAX,
    // Without it, channels to one target share a subchannel: N clients, one connection.
    ...(ownConnection ? { "grpc.use_local_subchannel_pool": 1 } : {}),
  });
}

const deadline = () => ({ deadline: Date.now() + 60_000 });

export async function open(kind: Kind, addr: string, size: Size, callers: number): Promise<Opened> {
  const n = Array.from({ length: callers });
  switch (kind) {
    case "grpc": {
      const c = grpcClient(addr, false);
      const call: Call =
        size === "small"
          ? () =>
              new Promise((res, rej) =>
                c.containerStatus(
                  ContainerStatusRequest.fromPartial(statusReq),
                  new grpc.Metadata(),
                  deadline(),
                  (e, r) => (e ? rej(e) : res(r)),
                ),
              )
          : () =>
              new Promise((res, rej) =>
                c.listContainers(ListContainersRequest.fromPartial({}), new grpc.Metadata(), deadline(), (e, r) =>
                  e ? rej(e) : res(r),
                ),
              );
      return { calls: n.map(() => call), close: async () => c.close() };
    }
    case "ttrpc": {
      const conn = await TtrpcClient.connect(addr);
      const c = createClient(TtrpcCri, conn);
      const call: Call =
        size === "small"
          ? () => c.containerStatus(ContainerStatusRequest.fromPartial(statusReq), { timeoutMs: 60_000 })
          : () => c.listContainers(ListContainersRequest.fromPartial({}), { timeoutMs: 60_000 });
      return { calls: n.map(() => call), close: async () => conn.close() };
    }
    case "http": {
      const pool = new Pool("http://localhost", { socketPath: addr, connections: callers, pipelining: 1 });
      const call: Call = async () => {
        const r = await pool.request({
          method: "POST",
          path: size === "small" ? "/runtime.v1/ContainerStatus" : "/runtime.v1/ListContainers",
          headers: { "content-type": "application/json" },
          body: JSON.stringify(
            size === "small" ? ContainerStatusRequest.toJSON(ContainerStatusRequest.fromPartial(statusReq)) : {},
          ),
          headersTimeout: 60_000,
          bodyTimeout: 60_000,
        });
        const json = await r.body.json();
        if (r.statusCode !== 200) throw new Error(`HTTP ${r.statusCode}`);
        return size === "small" ? ContainerStatusResponse.fromJSON(json) : ListContainersResponse.fromJSON(json);
      };
      return { calls: n.map(() => call), close: () => pool.close() };
    }
    case "redis": {
      const conns = await Promise.all(n.map(() => RespClient.open(addr)));
      const calls = conns.map((c): Call => {
        const replyTo = `berth:bench:reply:${randomBytes(8).toString("hex")}`;
        const body =
          size === "small"
            ? Buffer.from(ContainerStatusRequest.encode(ContainerStatusRequest.fromPartial(statusReq)).finish())
            : Buffer.from(ListContainersRequest.encode(ListContainersRequest.fromPartial({})).finish());
        const msg = Buffer.concat([
          Buffer.from(`${replyTo}\0${size === "small" ? "ContainerStatus" : "ListContainers"}\0`),
          body,
        ]);
        return async () => {
          // Both commands go out at once; the BLPOP answers when a worker has pushed the reply.
          const [, r] = await Promise.all([c.command("RPUSH", REQUEST_LIST, msg), c.command("BLPOP", replyTo, "60")]);
          if (!r) throw new Error("redis: no reply within 60 s");
          const bytes = (r as Buffer[])[1]!;
          return size === "small" ? ContainerStatusResponse.decode(bytes) : ListContainersResponse.decode(bytes);
        };
      });
      return { calls, close: async () => conns.forEach((c) => c.close()) };
    }
  }
}

/** One idle connection of `kind` that has made one small call (for the memory-per-connection figure). */
export async function idleConnection(kind: Kind, addr: string): Promise<() => void> {
  if (kind === "grpc") {
    const c = grpcClient(addr, true);
    await new Promise((res, rej) =>
      c.containerStatus(ContainerStatusRequest.fromPartial(statusReq), (e, r) => (e ? rej(e) : res(r))),
    );
    return () => c.close();
  }
  if (kind === "redis") {
    const c = await RespClient.open(addr);
    await c.command("PING");
    return () => c.close();
  }
  const o = await open(kind, addr, "small", 1);
  await o.calls[0]!();
  return () => void o.close();
}
