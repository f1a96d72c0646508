import type { Duplex } from "node:stream";

import { InvalidArgumentError } from "../util/errors.js";

// The service description both sides work from: ts-proto's "generic definition"
// (`XDefinition` in src/gen), plus the metadata helpers shared by client and server.

/**
 * What ttrpc runs over: a net.Socket, or any duplex byte stream (one logical connection of
 * NRI's multiplexed socket is one). ref/unref/setNoDelay are used when the stream has them.
 */
export type TtrpcTransport = Duplex & {
  ref?(): unknown;
  unref?(): unknown;
  setNoDelay?(noDelay?: boolean): unknown;
};

/** What ttrpc needs of a generated message type (ts-proto's MessageFns fits). */
export interface MessageCodec<T> {
  encode(message: T): { finish(): Uint8Array };
  decode(input: Uint8Array): T;
}

export interface MethodDefinition<Req = unknown, Res = unknown> {
  /** The wire name, e.g. "State" (the object key is the camelCase name). */
  name: string;
  requestType: MessageCodec<Req>;
  requestStream: boolean;
  responseType: MessageCodec<Res>;
  responseStream: boolean;
  options?: unknown;
}

export interface ServiceDefinition {
  name: string;
  /** The full protobuf service name sent on the wire, e.g. "containerd.task.v2.Task". */
  fullName: string;
  methods: Record<string, MethodDefinition>;
}

export type RequestOf<M> = M extends { requestType: { decode(input: Uint8Array): infer Q } } ? Q : never;
export type ResponseOf<M> = M extends { responseType: { decode(input: Uint8Array): infer R } } ? R : never;

/** Request metadata as handlers see it: lower-case keys, every value in arrival order. */
export type Metadata = Map<string, string[]>;

/** Metadata as callers may give it. Keys are lower-cased on the wire, as Go's ttrpc does. */
export type MetadataInit = Map<string, string | string[]> | Record<string, string | string[]>;

/** The metadata key containerd uses to carry the namespace over ttrpc. */
export const NAMESPACE_METADATA_KEY = "containerd-namespace-ttrpc";

export function metadataToKeyValues(md: MetadataInit | undefined): { key: string; value: string }[] {
  if (md === undefined) return [];
  const entries = md instanceof Map ? [...md.entries()] : Object.entries(md);
  const out: { key: string; value: string }[] = [];
  for (const [k, v] of entries) {
    const key = k.toLowerCase();
    for (const value of Array.isArray(v) ? v : [v]) out.push({ key, value });
  }
  return out;
}

export function metadataFromKeyValues(kvs: readonly { key: string; value: string }[]): Metadata {
  const md: Metadata = new Map();
  for (const { key, value } of kvs) {
    const k = key.toLowerCase();
    const list = md.get(k);
    if (list) list.push(value);
    else md.set(k, [value]);
  }
  return md;
}

/** Accepts both a plain path and containerd's printed form `unix:///path`; refuses abstract sockets. */
export function socketPath(address: string): string {
  const path = address.startsWith("unix://") ? address.slice("unix://".length) : address;
  if (path === "") throw new InvalidArgumentError("ttrpc: empty socket path");
  if (path.startsWith("\0") || path.startsWith("@")) {
    // Abstract sockets ignore file permissions: any process in the network namespace can connect.
    throw new InvalidArgumentError(`ttrpc: abstract unix sockets are not supported (${JSON.stringify(address)})`);
  }
  return path;
}
