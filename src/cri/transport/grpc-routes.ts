// The methods a gRPC server serves and the checks every request stream passes before its call
// starts (gRPC over HTTP/2): POST only (405), content-type application/grpc[+proto|;...] (415), a
// known /service/method (else UNIMPLEMENTED), grpc-encoding identity or gzip (else UNIMPLEMENTED
// naming the ones accepted), grpc-timeout as the call's deadline (malformed: INTERNAL).
// Bidirectional methods are refused when registered: berth has none.

import { status as Code, type ServiceDefinition, type UntypedServiceImplementation } from "@grpc/grpc-js";
import type { CallStream } from "./call-stream.js";
import { Deadlines } from "./deadlines.js";
import { parseGrpcTimeout } from "./grpc-timeout.js";
import { CallCore, H2ReadableCall, H2UnaryCall, H2WritableCall } from "./h2-call.js";

export interface MessageLimits {
  maxRecvMessageSize: number;
  maxSendMessageSize: number;
}

type Kind = "unary" | "serverStream" | "clientStream";
interface Route {
  kind: Kind;
  /** The grpc-js style handler; its shape follows `kind`. */
  handler: unknown;
  deserialize: (b: Buffer) => unknown;
  serialize: (v: unknown) => Buffer;
}

/** "application/grpc", optionally followed by "+subtype" or ";params" (the spec's Content-Type). */
export function isGrpcContentType(ct: string | string[] | undefined): boolean {
  if (typeof ct !== "string" || !ct.startsWith("application/grpc")) return false;
  const next = ct.charAt(16);
  return next === "" || next === "+" || next === ";";
}

export class GrpcRoutes {
  private readonly routes = new Map<string, Route>();
  private readonly deadlines = new Deadlines();

  constructor(private readonly limits: MessageLimits) {}

  /** Registers every method of `definition` that `impl` has (as grpc.Server.addService). */
  addService(definition: ServiceDefinition, impl: UntypedServiceImplementation): void {
    for (const [name, def] of Object.entries(definition)) {
      const handler = impl[name] ?? impl[def.originalName ?? ""];
      if (!handler) continue;
      if (def.requestStream && def.responseStream)
        throw new Error(`${def.path}: bidirectional streaming is not supported`);
      const kind: Kind = def.requestStream ? "clientStream" : def.responseStream ? "serverStream" : "unary";
      this.routes.set(def.path, {
        kind,
        handler,
        deserialize: def.requestDeserialize as Route["deserialize"],
        serialize: def.responseSerialize as Route["serialize"],
      });
    }
  }

  /** Checks a new request stream and starts its call, or answers it with the error. */
  dispatch(stream: CallStream): void {
    const { headers } = stream;
    if (headers[":method"] !== "POST") return stream.respondHttp(405);
    if (!isGrpcContentType(headers["content-type"])) return stream.respondHttp(415);
    const path = String(headers[":path"] ?? "");
    const route = this.routes.get(path);
    if (!route) return stream.finish(undefined, Code.UNIMPLEMENTED, `The server does not implement the method ${path}`);
    const encoding = headers["grpc-encoding"];
    if (encoding !== undefined && encoding !== "identity" && encoding !== "gzip") {
      return stream.finish(
        undefined,
        Code.UNIMPLEMENTED,
        `grpc-encoding ${String(encoding)} is not supported`,
        undefined,
        {
          "grpc-accept-encoding": "identity,gzip",
        },
      );
    }
    let timeoutMs: number | undefined;
    try {
      timeoutMs = parseGrpcTimeout(headers["grpc-timeout"]);
    } catch (err) {
      return stream.finish(undefined, Code.INTERNAL, (err as Error).message);
    }
    const core = new CallCore({
      stream,
      timeoutMs,
      deadlines: this.deadlines,
      gzip: encoding === "gzip",
      maxRecv: this.limits.maxRecvMessageSize,
      maxSend: this.limits.maxSendMessageSize,
      deserialize: route.deserialize,
      serialize: route.serialize,
    });
    switch (route.kind) {
      case "unary":
        return new H2UnaryCall(core).start(route.handler as never);
      case "serverStream":
        return new H2WritableCall(core).start(route.handler as never);
      case "clientStream":
        return new H2ReadableCall(core).start(route.handler as never);
    }
  }
}
