// gRPC clients for berthd's socket: the CRI RuntimeService and ImageService, and berth's own
// service (berth.v1.Berth). Unary calls are wrapped to return promises; requests are
// completed with fromPartial so callers name only the fields they set.
import * as grpc from "@grpc/grpc-js";
import { BerthClient } from "../gen/berth/v1/berth.js";
import {
  ImageServiceClient,
  ImageServiceDefinition,
  RuntimeServiceClient,
  RuntimeServiceDefinition,
  type ImageServiceServer,
  type RuntimeServiceServer,
} from "../gen/cri/runtime/v1/api.js";

export const DEFAULT_ADDRESS = "/run/berth/berth.sock";

type DeepPartial<T> = T extends bigint | string | number | boolean | Buffer | undefined
  ? T
  : T extends (infer E)[]
    ? DeepPartial<E>[]
    : T extends object
      ? { [K in keyof T]?: DeepPartial<T[K]> }
      : T;

export interface CallOptions {
  /** Milliseconds; default 60 s (pulls and stops can take long; they set their own). */
  timeoutMs?: number;
}

/** Promise-returning unary calls of a generated grpc-js server interface. */
export type PromiseClient<S> = {
  [
    K in keyof S as string extends K ? never : S[K] extends grpc.handleServerStreamingCall<never, never> ? never : K
  ]: S[K] extends grpc.handleUnaryCall<infer Req, infer Res>
    ? (request: DeepPartial<Req>, options?: CallOptions) => Promise<Res>
    : never;
};

interface GenericDefinition {
  methods: Record<string, { requestType: { fromPartial(o: unknown): unknown }; responseStream: boolean }>;
}

function promiseClient<S>(client: grpc.Client, definition: GenericDefinition): PromiseClient<S> {
  const out: Record<string, unknown> = {};
  for (const [name, m] of Object.entries(definition.methods)) {
    if (m.responseStream) continue;
    out[name] = (request: unknown, options: CallOptions = {}) =>
      new Promise((resolve, reject) => {
        const fn = (client as unknown as Record<string, (...a: unknown[]) => unknown>)[name];
        fn.call(
          client,
          m.requestType.fromPartial(request ?? {}),
          new grpc.Metadata(),
          { deadline: Date.now() + (options.timeoutMs ?? 60_000) },
          (err: grpc.ServiceError | null, res: unknown) => (err ? reject(err) : resolve(res)),
        );
      });
  }
  return out as PromiseClient<S>;
}

export interface Clients {
  address: string;
  runtime: RuntimeServiceClient;
  image: ImageServiceClient;
  berth: BerthClient;
  rt: PromiseClient<RuntimeServiceServer>;
  img: PromiseClient<ImageServiceServer>;
  close(): void;
}

/** The socket path the user asked for: --address, then BERTH_ADDRESS, then the default. */
export function resolveAddress(flag: string | undefined): string {
  const a = flag || process.env.BERTH_ADDRESS || DEFAULT_ADDRESS;
  return a.replace(/^unix:\/\//, "");
}

export function connect(address: string): Clients {
  const target = `unix://${address}`;
  const creds = grpc.credentials.createInsecure();
  const options: grpc.ClientOptions = {
    "grpc.max_receive_message_length": 16 * 1024 * 1024,
    "grpc.max_send_message_length": 16 * 1024 * 1024,
  };
  // One channel for all three clients: they share the connection.
  const runtime = new RuntimeServiceClient(target, creds, options);
  const channelOverride = runtime.getChannel();
  const image = new ImageServiceClient(target, creds, { ...options, channelOverride });
  const berth = new BerthClient(target, creds, { ...options, channelOverride });
  return {
    address,
    runtime,
    image,
    berth,
    rt: promiseClient<RuntimeServiceServer>(runtime, RuntimeServiceDefinition),
    img: promiseClient<ImageServiceServer>(image, ImageServiceDefinition),
    close() {
      runtime.close();
    },
  };
}
