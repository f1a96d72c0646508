// berth.v1.Berth/ListTraces: the recent traces the tracer keeps, for `berth trace`.

import type * as grpc from "@grpc/grpc-js";
import { ListTracesResponse, type ListTracesRequest, type Trace } from "../gen/berth/v1/berth.js";
import type { TraceRecord, Tracer } from "./tracer.js";

export function traceToProto(t: TraceRecord): Trace {
  return {
    traceId: t.traceId,
    spans: t.spans.map((s) => ({
      spanId: s.spanId,
      parentSpanId: s.parentSpanId,
      name: s.name,
      startTime: s.startNs,
      durationNanos: s.durationNs ?? -1n,
      status: s.status,
      error: s.error,
      attributes: { ...s.attributes },
    })),
  };
}

export function listTraces(tracer: Tracer, req: ListTracesRequest): ListTracesResponse {
  const traces = req.traceId
    ? tracer.find(req.traceId)
    : tracer.recent(req.limit > 0 ? req.limit : 10, req.nameContains);
  return ListTracesResponse.fromPartial({ traces: traces.map(traceToProto) });
}

/** The grpc-js handler for ListTraces, merged into the berth.v1.Berth implementation. */
export function listTracesHandler(tracer: Tracer): grpc.handleUnaryCall<ListTracesRequest, ListTracesResponse> {
  return (call, callback) => {
    try {
      callback(null, listTraces(tracer, call.request));
    } catch (err) {
      callback(err as Error);
    }
  };
}
