// Typed clients built from generated service definitions, on top of TtrpcClient's raw calls.
import type { CallOptions } from "./client-options.js";
import type { ClientStream } from "./client-stream.js";
import type { TtrpcClient } from "./client.js";
import type { RequestOf, ResponseOf, ServiceDefinition } from "./definition.js";

type ClientMethod<M> = M extends { requestStream: true }
  ? M extends { responseStream: true }
    ? (
        requests: AsyncIterable<RequestOf<M>> | Iterable<RequestOf<M>>,
        opts?: CallOptions,
      ) => AsyncIterable<ResponseOf<M>>
    : (requests: AsyncIterable<RequestOf<M>> | Iterable<RequestOf<M>>, opts?: CallOptions) => Promise<ResponseOf<M>>
  : M extends { responseStream: true }
    ? (request: RequestOf<M>, opts?: CallOptions) => AsyncIterable<ResponseOf<M>>
    : (request: RequestOf<M>, opts?: CallOptions) => Promise<ResponseOf<M>>;

/** A typed client: one camelCase method per method of the definition. */
export type ServiceClient<D extends ServiceDefinition> = {
  [K in keyof D["methods"]]: ClientMethod<D["methods"][K]>;
};

/** Builds a typed client for a generated service definition, e.g. `createClient(TaskDefinition, conn)`. */
export function createClient<D extends ServiceDefinition>(definition: D, client: TtrpcClient): ServiceClient<D> {
  const out: Record<string, unknown> = {};
  for (const [camel, m] of Object.entries(definition.methods)) {
    const service = definition.fullName;
    const encode = (msg: unknown) => m.requestType.encode(msg).finish();
    if (!m.requestStream && !m.responseStream) {
      out[camel] = async (req: unknown, opts?: CallOptions) =>
        m.responseType.decode(await client.call(service, m.name, encode(req), opts));
      continue;
    }
    const kind = { requestStream: m.requestStream, responseStream: m.responseStream };
    const open = (input: unknown, opts?: CallOptions): ClientStream => {
      const stream = client.openStream(service, m.name, kind, kind.requestStream ? undefined : encode(input), opts);
      if (kind.requestStream) void pump(client, stream, input as AsyncIterable<unknown> | Iterable<unknown>, encode);
      return stream;
    };
    if (m.responseStream) {
      out[camel] = (input: unknown, opts?: CallOptions) =>
        decodeAll(open(input, opts), (b) => m.responseType.decode(b));
    } else {
      out[camel] = async (input: unknown, opts?: CallOptions) => {
        const stream = open(input, opts);
        let last: Buffer | undefined;
        for await (const b of stream.responses) last = b;
        return m.responseType.decode(last ?? Buffer.alloc(0));
      };
    }
  }
  return out as ServiceClient<D>;
}

async function pump(
  client: TtrpcClient,
  stream: ClientStream,
  input: AsyncIterable<unknown> | Iterable<unknown>,
  encode: (m: unknown) => Uint8Array,
): Promise<void> {
  try {
    for await (const msg of input) {
      // The server may finish the call before we are done sending; stop quietly then.
      if (!stream.canSend) return;
      stream.send(encode(msg));
    }
    stream.closeSend();
  } catch (err) {
    client.failStream(stream.id, err instanceof Error ? err : new Error(String(err)));
  }
}

async function* decodeAll<T>(stream: ClientStream, decode: (b: Buffer) => T): AsyncIterable<T> {
  for await (const b of stream.responses) yield decode(b);
}
