// berthd's observability, built once by the composition root: the tracer, the metrics, and
// the small wrappers that feed them from the CRI server, core services and the ttrpc client.

import { TraceSpanEvent } from "../gen/berth/v1/trace_event.js";
import { setCallObserver } from "../ttrpc/client.js";
import { BerthMetrics, type MetricsSources } from "./metrics.js";
import { codeNameOf, NO_ATTRIBUTES, Tracer } from "./tracer.js";

export { BerthMetrics, isLoopback, parseHostPort, serveMetrics, type MetricsSources } from "./metrics.js";
export { OtlpExporter, otlpBody, tracesUrl } from "./otlp.js";
export { listTraces, listTracesHandler, traceToProto } from "./trace-service.js";
export { codeNameOf, Tracer, type SpanRecord, type TraceRecord } from "./tracer.js";

/** Shape of the CRI server's per-call hook (cri/handlers.ts CriCallObserver). */
export interface CallObserver {
  /** `hints.polled`: a read kubelet polls, traced without AsyncLocalStorage (tracer.ts). */
  run<T>(method: string, handler: () => Promise<T>, hints?: { polled: boolean }): Promise<T>;
}

/** Request metadata that asks berth's shim to report its OCI runtime commands as spans (src/shim/trace.ts). */
export const TRACE_ID_METADATA_KEY = "berth-trace-id";
export const SPAN_ID_METADATA_KEY = "berth-span-id";
/** Topic and message name of those reports, forwarded like any task event. */
export const TRACE_SPAN_TOPIC = "/berth/trace/span";
export const TRACE_SPAN_TYPE = "berth.v1.TraceSpanEvent";

/** The part of the shim manager (runtime/) the tracer follows: its stream of shim events. */
export interface ShimEventSource {
  onEvent(fn: (ev: { type: string; topic: string; typeUrl?: string; value?: Buffer }) => void): () => void;
}

type AsyncMethod = (...args: never[]) => Promise<unknown>;
type AsyncMethodNames<T> = { [K in keyof T]: T[K] extends AsyncMethod ? K : never }[keyof T] & string;

const SHALLOW = { shallow: true } as const;
const DEEP = { shallow: false } as const;

function seconds(startedHr: bigint): number {
  return Number(process.hrtime.bigint() - startedHr) / 1e9;
}

export class Observability {
  readonly tracer: Tracer;
  /** Absent when nothing serves them (no metrics endpoint): then calls are not counted at all. */
  readonly metrics: BerthMetrics | undefined;
  private uninstallTtrpc: (() => void) | undefined;

  constructor(opts: { traceBufferSize: number; sources?: MetricsSources; metrics?: boolean }) {
    this.tracer = new Tracer(opts.traceBufferSize);
    this.metrics = opts.metrics === false ? undefined : new BerthMetrics(opts.sources);
  }

  /**
   * Finished CRI calls not yet in the metrics. A prom-client update (label validation and
   * hashing, for a counter and a histogram) costs more than the rest of the wrapper around a
   * status read, so calls are recorded after their response has gone out: one setImmediate
   * for all the calls finished in the same turn. It runs before the event loop reads anything
   * else, so a scrape that follows a call always counts it.
   */
  private pendingCalls: { method: string; code: string; seconds: number }[] = [];

  private recordCall(method: string, code: string, seconds: number): void {
    const metrics = this.metrics;
    if (!metrics) return;
    if (this.pendingCalls.push({ method, code, seconds }) > 1) return;
    setImmediate(() => {
      const calls = this.pendingCalls;
      this.pendingCalls = [];
      for (const c of calls) metrics.criCall(c.method, c.code, c.seconds);
    });
  }

  /** The CRI server's hook: each call is the root span of a trace and one sample of the CRI metrics. */
  readonly cri: CallObserver = {
    run: <T>(method: string, handler: () => Promise<T>, hints?: { polled: boolean }): Promise<T> => {
      const started = this.metrics ? process.hrtime.bigint() : 0n;
      const traced = this.tracer.root(method, NO_ATTRIBUTES, handler, hints?.polled ? SHALLOW : DEEP);
      // Without metrics the trace is all there is to do: no extra promise.
      if (!this.metrics) return traced;
      return traced.then(
        (v) => {
          this.recordCall(method, "OK", seconds(started));
          return v;
        },
        (err: unknown) => {
          this.recordCall(method, codeNameOf(err), seconds(started));
          throw err;
        },
      );
    },
  };

  /**
   * The same object with the named async methods each run as a span "<prefix>.<method>".
   * Methods are called on the target itself, so private state and internal calls work as before.
   */
  traced<T extends object>(target: T, prefix: string, methods: AsyncMethodNames<T>[]): T {
    const names = new Set<string | symbol>(methods);
    const tracer = this.tracer;
    // The function handed out for each method, made once per method (not a new bound function
    // on every access: status reads touch the image service's methods on every call).
    const made = new Map<string | symbol, { of: unknown; fn: unknown }>();
    return new Proxy(target, {
      get(t, prop) {
        const v = Reflect.get(t, prop, t) as unknown;
        if (typeof v !== "function") return v;
        const m = made.get(prop);
        if (m?.of === v) return m.fn;
        const spanName = `${prefix}.${String(prop)}`;
        const fn = !names.has(prop)
          ? v.bind(t)
          : (...args: unknown[]) =>
              tracer.span(spanName, NO_ATTRIBUTES, () => (v as (...a: unknown[]) => Promise<unknown>).apply(t, args));
        made.set(prop, { of: v, fn });
        return fn;
      },
    });
  }

  /** An image service whose pulls count downloaded bytes (from their progress events) into the metrics. */
  countingPulls<
    T extends {
      pull(
        ref: string,
        auth?: never,
        opts?: { onProgress?: (p: { phase: string; digest?: string; done?: number }) => void },
      ): Promise<unknown>;
    },
  >(images: T): T {
    const metrics = this.metrics;
    if (!metrics) return images;
    // One bound function per method, as traced() keeps them: a new one on every access made
    // the tracing proxy around this one (compose.ts) bind and remember anew on every status read.
    const bound = new Map<string | symbol, { of: unknown; fn: unknown }>();
    return new Proxy(images, {
      get(t, prop) {
        const v = Reflect.get(t, prop, t) as unknown;
        if (typeof v !== "function") return v;
        if (prop !== "pull") {
          const m = bound.get(prop);
          if (m?.of === v) return m.fn;
          const fn = v.bind(t);
          bound.set(prop, { of: v, fn });
          return fn;
        }
        return (ref: string, auth?: never, opts: Parameters<T["pull"]>[2] = {}) => {
          const seen = new Map<string, number>();
          const onProgress = opts?.onProgress;
          return t.pull(ref, auth, {
            ...opts,
            onProgress: (p) => {
              if (p.phase === "downloading" && p.digest && p.done !== undefined) {
                metrics.addPullBytes(p.done - (seen.get(p.digest) ?? 0));
                seen.set(p.digest, p.done);
              }
              onProgress?.(p);
            },
          });
        };
      },
    });
  }

  /** Makes every ttrpc call of this process (berthd -> shims) a span and a metrics sample. */
  instrumentTtrpc(): void {
    this.uninstallTtrpc = setCallObserver((label, run) => {
      const started = process.hrtime.bigint();
      // Inside a trace, the shim is asked to report its runtime commands under this span.
      const traced = () => {
        const ids = this.tracer.currentIds();
        return run(ids && { [TRACE_ID_METADATA_KEY]: ids.traceId, [SPAN_ID_METADATA_KEY]: ids.spanId });
      };
      return this.tracer.span(`ttrpc ${label}`, {}, traced).then(
        (v) => {
          this.metrics?.shimCall(label, "OK", seconds(started));
          return v;
        },
        (err: unknown) => {
          this.metrics?.shimCall(label, codeNameOf(err), seconds(started));
          throw err;
        },
      );
    });
  }

  /**
   * Adds the spans shims report (`/berth/trace/span` events) to their traces. The runtime
   * manager hands them on as events of a type it does not know; they are decoded here.
   * Returns the function that stops following.
   */
  followShimSpans(source: ShimEventSource): () => void {
    return source.onEvent((ev) => {
      if (ev.type !== "unknown" || ev.topic !== TRACE_SPAN_TOPIC || !ev.value) return;
      if ((ev.typeUrl ?? "").split("/").pop() !== TRACE_SPAN_TYPE) return;
      let e: TraceSpanEvent;
      try {
        e = TraceSpanEvent.decode(ev.value);
      } catch {
        return; // a malformed report costs a span, nothing more
      }
      this.tracer.addRemoteSpan({
        traceId: e.traceId,
        parentSpanId: e.parentSpanId,
        name: e.name,
        startNs: e.startUnixNano,
        durationNs: e.durationNano,
        attributes: e.attributes,
      });
    });
  }

  close(): void {
    this.uninstallTtrpc?.();
    this.uninstallTtrpc = undefined;
  }
}
