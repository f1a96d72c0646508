// Carries berthd's trace context through one Task call to the OCI runtime commands it runs.
// berthd adds `berth-trace-id` / `berth-span-id` request metadata to its ttrpc calls made
// inside a traced CRI call; the shim times each runtime command run on behalf of such a call
// and publishes it as a `/berth/trace/span` event, which berthd appends to that trace.
// containerd never sends this metadata, so it sees no new events.
import { AsyncLocalStorage } from "node:async_hooks";

import { NAMESPACE_METADATA_KEY, type CallContext } from "../ttrpc/index.js";
import type { EventEncoder } from "./events.js";
import { monotonicClockNs } from "../util/clock.js";

export const TRACE_ID_METADATA_KEY = "berth-trace-id";
export const SPAN_ID_METADATA_KEY = "berth-span-id";
export const TRACE_SPAN_TOPIC = "/berth/trace/span";
export const TRACE_SPAN_TYPE = "berth.v1.TraceSpanEvent";

export interface TraceContext {
  traceId: string;
  /** The caller's span (its ttrpc call) the runtime commands become children of. */
  parentSpanId: string;
  /** The call's containerd namespace (empty: the shim's own). */
  namespace: string;
}

export interface RuntimeSpan {
  name: string;
  startUnixNano: bigint;
  durationNano: bigint;
  attributes: Record<string, string>;
}

/** Where finished runtime spans go (the shim's event publisher). */
export type SpanSink = (ctx: TraceContext, span: RuntimeSpan) => void;

const als = new AsyncLocalStorage<TraceContext>();

/** The trace context a call's metadata carries, if any (ids are hex; anything else is ignored). */
export function traceContextOf(ctx: CallContext | undefined): TraceContext | undefined {
  const traceId = ctx?.metadata.get(TRACE_ID_METADATA_KEY)?.[0] ?? "";
  const parentSpanId = ctx?.metadata.get(SPAN_ID_METADATA_KEY)?.[0] ?? "";
  if (!/^[0-9a-f]{1,64}$/.test(traceId) || !/^[0-9a-f]{1,32}$/.test(parentSpanId)) return undefined;
  return { traceId, parentSpanId, namespace: ctx?.metadata.get(NAMESPACE_METADATA_KEY)?.[0] ?? "" };
}

/**
 * The same service with every handler run inside the trace context of its call's metadata,
 * so code deep below (runtime.ts, the monitor spawn) finds it without an extra argument.
 */
export function withTraceContext<T extends object>(service: T): T {
  return new Proxy(service, {
    get(t, prop) {
      const v = Reflect.get(t, prop, t) as unknown;
      if (typeof v !== "function") return v;
      return (req: unknown, ctx?: CallContext) => {
        const tc = traceContextOf(ctx);
        const call = () => (v as (r: unknown, c?: CallContext) => unknown).call(t, req, ctx);
        return tc ? als.run(tc, call) : call();
      };
    },
  });
}

let sink: SpanSink | undefined;

/** Installs where runtime spans go; returns a function that removes it. */
export function setSpanSink(fn: SpanSink): () => void {
  sink = fn;
  return () => {
    if (sink === fn) sink = undefined;
  };
}

// Wall-clock start plus a monotonic offset, like berthd's tracer, so durations never go negative.
const spanClockNs = monotonicClockNs();

/**
 * Runs `fn` (one OCI runtime command) and, inside a traced call, reports it as a span named
 * `name` ("runc create"). Failures are reported too (attribute "error"), then rethrown.
 */
export async function traceRuntime<T>(
  name: string,
  attributes: Record<string, string>,
  fn: () => Promise<T>,
): Promise<T> {
  const tc = als.getStore();
  const to = sink;
  if (!tc || !to) return fn();
  const started = spanClockNs();
  const report = (extra: Record<string, string>) => {
    const ended = spanClockNs();
    try {
      to(tc, {
        name,
        startUnixNano: started,
        durationNano: ended - started,
        attributes: { ...attributes, ...extra },
      });
    } catch {
      // tracing never fails the command it observes
    }
  };
  try {
    const v = await fn();
    report({});
    return v;
  } catch (err) {
    report({ error: err instanceof Error ? err.message : String(err) });
    throw err;
  }
}

/**
 * A sink that publishes each span as a `berth.v1.TraceSpanEvent`, loaded on the first traced
 * command: a shim driven by containerd never needs it. The message has its own proto file
 * (proto/berth/v1/trace_event.proto) so that loading it does not load berthd's gRPC service
 * and grpc-js with it.
 */
export function publishingSink(
  publish: <E>(namespace: string, topic: string, typeName: string, codec: EventEncoder<E>, event: E) => void,
  log: (msg: string) => void = () => {},
): SpanSink {
  let codec: Promise<typeof import("../gen/berth/v1/trace_event.js").TraceSpanEvent> | undefined;
  return (tc, span) => {
    codec ??= import("../gen/berth/v1/trace_event.js").then((m) => m.TraceSpanEvent);
    codec.then(
      (c) =>
        publish(tc.namespace, TRACE_SPAN_TOPIC, TRACE_SPAN_TYPE, c, {
          traceId: tc.traceId,
          parentSpanId: tc.parentSpanId,
          name: span.name,
          startUnixNano: span.startUnixNano,
          durationNano: span.durationNano,
          attributes: span.attributes,
        }),
      (err: unknown) => log(`trace: cannot load berth.v1 messages: ${String(err)}`),
    );
  };
}
