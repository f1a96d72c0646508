// ttrpc (containerd/ttrpc) client and server over unix sockets.
export { TtrpcClient, ClientStream, createClient } from "./client.js";
export type { CallOptions, ClientOptions, ServiceClient, StreamKind } from "./client.js";
export { TtrpcServer } from "./server.js";
export type {
  CallContext,
  CloseOptions,
  ListenOptions,
  MethodImplementation,
  ServerLogger,
  ServerOptions,
  ServiceImplementation,
} from "./server.js";
export { NAMESPACE_METADATA_KEY, metadataFromKeyValues, metadataToKeyValues, socketPath } from "./definition.js";
export type {
  MessageCodec,
  Metadata,
  MetadataInit,
  MethodDefinition,
  RequestOf,
  ResponseOf,
  ServiceDefinition,
  TtrpcTransport,
} from "./definition.js";
export {
  DEFAULT_MAX_MESSAGE_SIZE,
  Flags,
  FrameParser,
  HEADER_LENGTH,
  MessageType,
  decodeHeader,
  encodeFrame,
  encodeHeader,
} from "./frame.js";
export type { FrameHeader, FrameSink } from "./frame.js";
