// Response serialization through one reused protobuf writer. The generated serializer
// (ts-proto: `Buffer.from(X.encode(value).finish())`) starts every response in a new 128-byte
// writer that doubles, copying, until the message fits, then copies the bytes twice more
// (finish's slice, Buffer.from). A status read polled every second paid that on every call, and
// ListContainers of 1,000 containers grew through a dozen buffers. One writer that keeps its
// grown buffer, and a Buffer over finish's own copy, leave a single copy per response.
// Encoding is synchronous and never re-entered, so one writer serves every call.
// The reads kubelet polls go further: a message the handlers keep per entry and hand out again
// while it is current (a ListContainers or ListPodSandbox item, a ContainerStatus, an Image, the
// Version answer) has its bytes kept by the object, and the response is those bytes, framed. A
// status read of a berthd whose code V8 has not optimized yet (its first minutes, or a node
// whose kubelet polls seldom) spent more time in the generated encoder than in any other part
// of the call.
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
 * A kept message's own bytes, by the object: the handlers hand out the same object while the
 * message is current (container/list.ts, sandbox/list.ts, container/status.ts, image-service.ts;
 * never changed once made), so a poll without changes encodes none of them again. A new
 * message is a new key.
 */
const messageBytes = new WeakMap<object, Uint8Array>();

function bytesOf(codec: MessageCodec, message: object): Uint8Array {
  let bytes = messageBytes.get(message);
  if (!bytes) {
    bytes = encodeWith(codec, message);
    messageBytes.set(message, bytes);
  }
  return bytes;
}

function varintSize(n: number): number {
  let size = 1;
  while (n >= 0x80) {
    n >>>= 7;
    size++;
  }
  return size;
}

/** Appends a length-delimited field: `tag`, the varint length, the bytes; returns the next position. */
function putField(out: Buffer, pos: number, tag: number, bytes: Uint8Array): number {
  out[pos++] = tag;
  for (let n = bytes.byteLength; ; n >>>= 7) {
    if (n < 0x80) {
      out[pos++] = n;
      break;
    }
    out[pos++] = (n & 0x7f) | 0x80;
  }
  out.set(bytes, pos);
  return pos + bytes.byteLength;
}

/** A length-delimited field (`tag`: its number << 3 | 2; field 1's is 0x0a) holding each of `parts`, in order. */
function framed(parts: readonly Uint8Array[], tag = 0x0a): Buffer {
  let total = 0;
  for (const bytes of parts) total += 1 + varintSize(bytes.byteLength) + bytes.byteLength;
  const out = Buffer.allocUnsafe(total);
  let pos = 0;
  for (const bytes of parts) pos = putField(out, pos, tag, bytes);
  return out;
}

/**
 * The last list answered per item codec: its items' bytes and the response made of them. A poll
 * whose items are all the same kept ones, in the same order, gets the same response bytes (and,
 * through grpc-frame.ts, the same framed message): kubelet lists every container each second,
 * and a new copy of a 1,000-container answer every time was half of that call's CPU in GC.
 */
const lastLists = new WeakMap<MessageCodec, { parts: Uint8Array[]; out: Buffer }>();

function sameParts(a: readonly Uint8Array[], b: readonly Uint8Array[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** A message whose only field is `repeated Item items = 1` (ListContainersResponse, ListPodSandboxResponse, ListImagesResponse). */
function encodeItems(items: readonly object[], item: MessageCodec): Buffer {
  const parts: Uint8Array[] = new Array(items.length);
  for (let i = 0; i < items.length; i++) {
    // bytesOf, inline: a list of 1,000 pays no call per item while V8 has not optimized this
    const it = items[i]!;
    let bytes = messageBytes.get(it);
    if (!bytes) {
      bytes = encodeWith(item, it);
      messageBytes.set(it, bytes);
    }
    parts[i] = bytes;
  }
  const last = lastLists.get(item);
  if (last && sameParts(last.parts, parts)) return last.out;
  const out = framed(parts);
  lastLists.set(item, { parts, out });
  return out;
}

function isEmpty(map: Record<string, string> | undefined): boolean {
  for (const _ in map) return false;
  return true;
}

/** The list responses whose items are kept per entry: the field holding them and the item codec's name. */
const LISTS: Record<string, { field: string; item: string }> = {
  listContainers: { field: "containers", item: "Container" },
  listPodSandbox: { field: "items", item: "PodSandbox" },
  listImages: { field: "images", item: "Image" },
};

/** Responses whose handler answers with one object for every call (Version): its bytes, kept. */
const KEPT = new Set(["version"]);

/**
 * The status responses of one kept message (field 1) and a verbose `info` map (field 2), which
 * is empty unless the caller asked for verbose: the message's bytes, framed; with info, the
 * generated encoding.
 */
const WRAPPED: Record<string, { field: string; item: string }> = {
  containerStatus: { field: "status", item: "ContainerStatus" },
  imageStatus: { field: "image", item: "Image" },
};

/** Whether the codec's message has exactly these fields, in this order (so field 1 is the first). */
function onlyFields(codec: MessageCodec, ...fields: string[]): boolean {
  return Object.keys(codec.decode(Buffer.alloc(0)) as object).join() === fields.join();
}

/** Whether a list of one empty item comes out as the generated serializer writes it (field 1). */
function sameAsGenerated(def: grpc.MethodDefinition<unknown, unknown>, field: string, item: MessageCodec): boolean {
  const sample = { [field]: [item.decode(Buffer.alloc(0)) as object] };
  return Buffer.compare(encodeItems(sample[field]!, item), def.responseSerialize(sample)) === 0;
}

/** An int64's varint (two's complement for a negative one, 10 bytes), as protobuf writes it. */
function varint64(v: bigint): number[] {
  let lo = Number(BigInt.asUintN(32, v));
  let hi = Number(BigInt.asUintN(32, v >> 32n));
  const out: number[] = [];
  while (hi !== 0) {
    out.push((lo & 0x7f) | 0x80);
    lo = ((lo >>> 7) | (hi << 25)) >>> 0;
    hi >>>= 7;
  }
  while (lo > 0x7f) {
    out.push((lo & 0x7f) | 0x80);
    lo >>>= 7;
  }
  out.push(lo);
  return out;
}

/**
 * PodSandboxStatusResponse without verbose info, written into one buffer: the kept pod status
 * (field 1), each kept container status (field 3) and the timestamp (field 4, an int64 made for
 * every call); with info, all of it through the generated encoder.
 */
function podStatusSerializer(codec: MessageCodec, pod: MessageCodec, ctr: MessageCodec) {
  return (value: unknown): Buffer => {
    const v = value as {
      status?: object;
      info?: Record<string, string>;
      containersStatuses: object[];
      timestamp: bigint;
    };
    if (!v.status || !isEmpty(v.info)) return encodeWith(codec, value);
    const status = bytesOf(pod, v.status);
    const list = v.containersStatuses;
    const ctrs: Uint8Array[] = new Array(list.length);
    let total = 1 + varintSize(status.byteLength) + status.byteLength;
    for (let i = 0; i < list.length; i++) {
      const b = bytesOf(ctr, list[i]!);
      ctrs[i] = b;
      total += 1 + varintSize(b.byteLength) + b.byteLength;
    }
    const ts = v.timestamp !== 0n ? varint64(v.timestamp) : undefined;
    if (ts) total += 1 + ts.length;
    const out = Buffer.allocUnsafe(total);
    let pos = putField(out, 0, 0x0a, status);
    for (let i = 0; i < ctrs.length; i++) pos = putField(out, pos, 0x1a, ctrs[i]!);
    if (ts) {
      out[pos++] = 0x20;
      for (let i = 0; i < ts.length; i++) out[pos++] = ts[i]!;
    }
    return out;
  };
}

/** Whether one empty kept message and no info come out as the generated serializer writes them. */
function sameWrapped(def: grpc.MethodDefinition<unknown, unknown>, field: string, inner: MessageCodec): boolean {
  const message = inner.decode(Buffer.alloc(0)) as object;
  return (
    Buffer.compare(framed([encodeWith(inner, message)]), def.responseSerialize({ [field]: message, info: {} })) === 0
  );
}

/** Whether the response has the fields podStatusSerializer writes, and a sample comes out as the generated serializer writes it. */
function samePodStatus(
  def: grpc.MethodDefinition<unknown, unknown>,
  codec: MessageCodec,
  codecs: Record<string, unknown>,
): boolean {
  const pod = codecs.PodSandboxStatus as MessageCodec | undefined;
  const ctr = codecs.ContainerStatus as MessageCodec | undefined;
  if (!pod || !ctr || !onlyFields(codec, "status", "info", "containersStatuses", "timestamp")) return false;
  const empty = Buffer.alloc(0);
  const serialize = podStatusSerializer(codec, pod, ctr);
  // the timestamp's varint at its edges (one byte, two, past 32 bits, negative) and now
  const stamps = [0n, 1n, 127n, 128n, 1n << 32n, 1n << 35n, -1n, 1_700_000_000_000_000_000n];
  return stamps.every((timestamp, i) => {
    const sample = {
      status: pod.decode(empty),
      info: {},
      containersStatuses: Array.from({ length: i % 3 }, () => ctr.decode(empty)),
      timestamp,
    };
    return Buffer.compare(serialize(sample), def.responseSerialize(sample)) === 0;
  });
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
    const wrapped = WRAPPED[name];
    const inner = wrapped && (codecs[wrapped.item] as MessageCodec | undefined);
    if (fits && list && item && onlyFields(codec!, list.field) && sameAsGenerated(def, list.field, item)) {
      const field = list.field;
      const serialize = (value: unknown) => encodeItems((value as Record<string, object[]>)[field]!, item);
      out[name] = { ...def, responseSerialize: serialize };
    } else if (
      fits &&
      wrapped &&
      inner &&
      onlyFields(codec!, wrapped.field, "info") &&
      sameWrapped(def, wrapped.field, inner)
    ) {
      const field = wrapped.field;
      // The whole response, by the kept message: a poll of an unchanged one frames nothing again.
      const responses = new WeakMap<object, Buffer>();
      const serialize = (value: unknown) => {
        const v = value as Record<string, unknown>;
        const message = v[field] as object | undefined;
        if (!message || !isEmpty(v.info as Record<string, string>)) return encodeWith(codec!, value);
        let bytes = responses.get(message);
        if (!bytes) {
          bytes = framed([bytesOf(inner, message)]);
          responses.set(message, bytes);
        }
        return bytes;
      };
      out[name] = { ...def, responseSerialize: serialize };
    } else if (fits && KEPT.has(name)) {
      out[name] = { ...def, responseSerialize: (value: unknown) => bytesOf(codec!, value as object) as Buffer };
    } else if (fits && name === "podSandboxStatus" && samePodStatus(def, codec!, codecs)) {
      const serialize = podStatusSerializer(codec!, codecs.PodSandboxStatus as MessageCodec, codecs.ContainerStatus as MessageCodec); // prettier-ignore
      out[name] = { ...def, responseSerialize: serialize };
    } else out[name] = fits ? { ...def, responseSerialize: (value: unknown) => encodeWith(codec!, value) } : def;
  }
  return out;
}
