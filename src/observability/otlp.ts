// Exports finished traces as OTLP/HTTP JSON (opentelemetry-proto's ExportTraceServiceRequest
// in its JSON mapping: ids as hex, 64-bit times as decimal strings). Traces are batched and
// posted in the background; a collector that is down costs a warning, never a CRI call.

import type { SpanRecord, TraceRecord } from "./tracer.js";

export interface OtlpOptions {
  /** Collector base URL ("http://127.0.0.1:4318") or the full traces URL (".../v1/traces"). */
  endpoint: string;
  serviceName?: string;
  /** Called when a post fails. */
  onError?: (err: Error) => void;
  /** Most traces held while the collector is slow; older ones are dropped. */
  maxQueue?: number;
}

/** OTLP span kinds: the CRI call is a server span, the ttrpc call a client span. */
const KIND_INTERNAL = 1;
const KIND_SERVER = 2;
const KIND_CLIENT = 3;
const STATUS_OK = 1;
const STATUS_ERROR = 2;

export function tracesUrl(endpoint: string): string {
  const e = endpoint.replace(/\/+$/, "");
  return e.endsWith("/v1/traces") ? e : `${e}/v1/traces`;
}

function otlpSpan(traceId: string, s: SpanRecord) {
  const kind = s.parentSpanId === "" ? KIND_SERVER : s.name.startsWith("ttrpc ") ? KIND_CLIENT : KIND_INTERNAL;
  return {
    traceId,
    spanId: s.spanId,
    parentSpanId: s.parentSpanId,
    name: s.name,
    kind,
    startTimeUnixNano: s.startNs.toString(),
    endTimeUnixNano: (s.startNs + (s.durationNs ?? 0n)).toString(),
    attributes: [
      ...Object.entries(s.attributes).map(([key, v]) => ({ key, value: { stringValue: v } })),
      { key: "rpc.grpc.status_code_name", value: { stringValue: s.status } },
    ],
    status: s.status === "OK" ? { code: STATUS_OK } : { code: STATUS_ERROR, message: s.error || s.status },
  };
}

/** The ExportTraceServiceRequest JSON body for some traces. */
export function otlpBody(traces: TraceRecord[], serviceName = "berthd"): unknown {
  return {
    resourceSpans: [
      {
        resource: { attributes: [{ key: "service.name", value: { stringValue: serviceName } }] },
        scopeSpans: [
          {
            scope: { name: "berth" },
            spans: traces.flatMap((t) => t.spans.map((s) => otlpSpan(t.traceId, s))),
          },
        ],
      },
    ],
  };
}

export class OtlpExporter {
  private queue: TraceRecord[] = [];
  private timer: NodeJS.Timeout | undefined;
  private inflight: Promise<void> = Promise.resolve();
  private readonly url: string;

  constructor(private readonly opts: OtlpOptions) {
    this.url = tracesUrl(opts.endpoint);
  }

  /** Queues a finished trace; a batch goes out within 200 ms. */
  readonly export = (trace: TraceRecord): void => {
    this.queue.push(trace);
    const max = this.opts.maxQueue ?? 1024;
    if (this.queue.length > max) this.queue.splice(0, this.queue.length - max);
    this.timer ??= setTimeout(() => void this.flush(), 200).unref();
  };

  /** Posts everything queued; resolves when the post (and any before it) finished. */
  flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    const batch = this.queue;
    this.queue = [];
    if (batch.length === 0) return this.inflight;
    this.inflight = this.inflight.then(() => this.post(batch));
    return this.inflight;
  }

  private async post(batch: TraceRecord[]): Promise<void> {
    try {
      const res = await fetch(this.url, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(otlpBody(batch, this.opts.serviceName)),
        signal: AbortSignal.timeout(10_000),
      });
      await res.arrayBuffer();
      if (!res.ok) throw new Error(`OTLP collector ${this.url} answered HTTP ${res.status}`);
    } catch (err) {
      this.opts.onError?.(err as Error);
    }
  }
}
