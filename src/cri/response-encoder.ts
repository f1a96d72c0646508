// Response serialization through one reused protobuf writer. The generated serializer
// (ts-proto: `Buffer.from(X.encode(value).finish())`) starts every response in a new 128-byte
// writer that doubles, copying, until the message fits, then copies the bytes twice more
// (finish's slice, Buffer.from). A status read polled every second paid that on every call, and
// ListContainers of 1,000 containers grew through a dozen buffers. One writer that keeps its
// grown buffer, and a Buffer over finish's own copy, leave a single copy per response.
// Encoding is synchronous and never re-entered, so one writer serves every call.
// ListContainers and ListPodSandbox go further: each item's bytes are kept by the item object
// (the lists keep their items per store entry), and the response is those bytes, framed.
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

/**
 * Each listed item's own bytes, by the item object: ListContainers and ListPodSandbox answer
 * with the items the store keeps per entry (container/list.ts, sandbox/list.ts; never changed
 * once made), so a poll without changes encodes none of them again. A new item is a new key.
 */
const itemBytes = new WeakMap<object, Uint8Array>();

function varintSize(n: number): number {
  let size = 1;
  while (n >= 0x80) {
    n >>>= 7;
    size++;
  }
  return size;
}

/** A message whose only field is `repeated Item items = 1` (ListContainersResponse, ListPodSandboxResponse). */
function encodeItems(items: readonly object[], item: MessageCodec): Buffer {
  const parts: Uint8Array[] = new Array(items.length);
  let total = 0;
  for (let i = 0; i < items.length; i++) {
    const it = items[i]!;
    let bytes = itemBytes.get(it);
    if (!bytes) {
      bytes = encodeWith(item, it);
      itemBytes.set(it, bytes);
    }
    parts[i] = bytes;
    total += 1 + varintSize(bytes.byteLength) + bytes.byteLength;
  }
  const out = Buffer.allocUnsafe(total);
  let pos = 0;
  for (const bytes of parts) {
    out[pos++] = 0x0a; // field 1, length-delimited
    for (let n = bytes.byteLength; ; n >>>= 7) {
      if (n < 0x80) {
        out[pos++] = n;
        break;
      }
      out[pos++] = (n & 0x7f) | 0x80;
    }
    out.set(bytes, pos);
    pos += bytes.byteLength;
  }
  return out;
}

/** The list responses whose items are kept per entry: the field holding them and the item codec's name. */
const LISTS: Record<string, { field: string; item: string }> = {
  listContainers: { field: "containers", item: "Container" },
  listPodSandbox: { field: "items", item: "PodSandbox" },
};

/** Whether the codec's message has `field` as its one field (so field 1 is all it writes). */
function onlyField(codec: MessageCodec, field: string): boolean {
  const keys = Object.keys(codec.decode(Buffer.alloc(0)) as object);
  return keys.length === 1 && keys[0] === field;
}

/** Whether a list of one empty item comes out as the generated serializer writes it (field 1). */
function sameAsGenerated(def: grpc.MethodDefinition<unknown, unknown>, field: string, item: MessageCodec): boolean {
  const sample = { [field]: [item.decode(Buffer.alloc(0)) as object] };
  return Buffer.compare(encodeItems(sample[field]!, item), def.responseSerialize(sample)) === 0;
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
    const list = LISTS[name];
    const item = list && (codecs[list.item] as MessageCodec | undefined);
    if (fits && list && item && onlyField(codec!, list.field) && sameAsGenerated(def, list.field, item)) {
      const field = list.field;
      const serialize = (value: unknown) => encodeItems((value as Record<string, object[]>)[field]!, item);
      out[name] = { ...def, responseSerialize: serialize };
    } else out[name] = fits ? { ...def, responseSerialize: (value: unknown) => encodeWith(codec!, value) } : def;
  }
  return out;
}
