// Response serialization through one reused protobuf writer. The generated serializer
// (ts-proto: `Buffer.from(X.encode(value).finish())`) starts every response in a new 128-byte
// writer that doubles, copying, until the message fits, then copies the bytes twice more
// (finish's slice, Buffer.from). A status read polled every second paid that on every call, and
// ListContainers of 1,000 containers grew through a dozen buffers. One writer that keeps its
// grown buffer, and a Buffer over finish's own copy, leave a single copy per response.
// Encoding is synchronous and never re-entered, so one writer serves every call.
import type * as grpc from "@grpc/grpc-js";
import { BinaryWriter } from "@bufbuild/protobuf/wire";

interface MessageCodec {
  encode(message: unknown, writer?: BinaryWriter): BinaryWriter;
  decode(input: Uint8Array): unknown;
}

/** A writer whose buffer grew past this is dropped after its response, not kept for the next. */
const KEEP_BYTES = 1 << 20;

let writer = new BinaryWriter();

function encodeWith(codec: MessageCodec, value: unknown): Buffer {
  try {
    codec.encode(value, writer);
  } catch (err) {
    writer = new BinaryWriter(); // half a message and an open fork are in it
    throw err;
  }
  const bytes = writer.finish(); // its own copy; the writer keeps its buffer and starts over
  if (bytes.byteLength > KEEP_BYTES) writer = new BinaryWriter();
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function sameDefaults(a: unknown, b: unknown): boolean {
  const json = (v: unknown) => JSON.stringify(v, (_k, x: unknown) => (typeof x === "bigint" ? `${x}n` : x));
  return json(a) === json(b);
}

/**
 * `definition` with each method's responseSerialize going through the reused writer. A
 * method's codec is `codecs["<Method>Response"]` (the CRI's naming), taken only when it decodes
 * an empty message to what the method's own responseDeserialize gives (the same fields and
 * defaults); any other method keeps its generated serializer.
 */
export function withReusedWriter(
  definition: grpc.ServiceDefinition,
  codecs: Record<string, unknown>,
): grpc.ServiceDefinition {
  const out: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  const empty = Buffer.alloc(0);
  for (const [name, def] of Object.entries(definition)) {
    const codec = codecs[`${name[0]!.toUpperCase()}${name.slice(1)}Response`] as MessageCodec | undefined;
    const fits =
      typeof codec?.encode === "function" &&
      typeof codec.decode === "function" &&
      sameDefaults(codec.decode(empty), def.responseDeserialize(empty));
    out[name] = fits ? { ...def, responseSerialize: (value: unknown) => encodeWith(codec!, value) } : def;
  }
  return out;
}
