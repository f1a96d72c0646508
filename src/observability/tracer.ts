// In-process tracing of CRI calls. Every CRI call opens a root span; code below it (core
// services, the ttrpc call to the shim) opens child spans through `span()`, which finds its
// parent through AsyncLocalStorage, so no layer has to pass a context argument down. Finished
// traces are kept in a ring buffer (the last N) for `berth trace`, and handed to an optional
// exporter (OTLP). Spans opened outside any CRI call (background monitors, metric scrapes)
// are not recorded: a trace always starts at a CRI call.
//
// What AsyncLocalStorage costs (issue 15): in Node 20 it is an async hook, and while it is
// enabled every promise, tick, timer and native callback of the whole process runs the hook and
// carries the store as an extra property; on a polled read that was about a fifth of berthd's
// CPU per call. So it is enabled only while a "deep" root runs (the default: a call whose
// children may open spans after an await, like RunPodSandbox) and disabled again when the last
// one ends. A "shallow" root (the reads kubelet polls) never enables it: its children are
// found through the synchronous part of each span instead (`sync` below), which is all a read
// needs; a span such a call opens after an await is not recorded.

import { AsyncLocalStorage } from "node:async_hooks";
import { statusCodeOf } from "../util/errors.js";
import { monotonicClockNs } from "../util/clock.js";
import { newSpanId, newTraceId } from "./ids.js";

export interface SpanRecord {
  spanId: string;
  /** Empty for the root span. */
  parentSpanId: string;
  name: string;
  /** Unix nanoseconds. */
  startNs: bigint;
  /** Undefined while the span is open. */
  durationNs?: bigint;
  /** gRPC code name of the outcome ("OK", "NOT_FOUND", ...). */
  status: string;
  error: string;
  attributes: Record<string, string>;
}

export interface TraceRecord {
  traceId: string;
  /** In start order; the first is the root. */
  spans: SpanRecord[];
}

export type TraceExporter = (trace: TraceRecord) => void;

/** A span measured in another process (the shim's OCI runtime command), reported after the fact. */
export interface RemoteSpan {
  traceId: string;
  parentSpanId: string;
  name: string;
  startNs: bigint;
  durationNs: bigint;
  attributes: Record<string, string>;
}

interface Active {
  trace: TraceRecord;
  span: SpanRecord;
  /** The root is deep: this span's children run in AsyncLocalStorage too. */
  deep: boolean;
}

export interface RootOptions {
  /** Only spans opened in the synchronous part of a span find their parent (see the top). */
  shallow?: boolean;
}

/** The attributes of a span that has none (shared: a polled read allocates no object for them). */
export const NO_ATTRIBUTES: Record<string, string> = Object.freeze({}) as Record<string, string>;

/** gRPC code names by number, for span status. */
const CODE_NAMES = [
  "OK",
  "CANCELLED",
  "UNKNOWN",
  "INVALID_ARGUMENT",
  "DEADLINE_EXCEEDED",
  "NOT_FOUND",
  "ALREADY_EXISTS",
  "PERMISSION_DENIED",
  "RESOURCE_EXHAUSTED",
  "FAILED_PRECONDITION",
  "ABORTED",
  "OUT_OF_RANGE",
  "UNIMPLEMENTED",
  "INTERNAL",
  "UNAVAILABLE",
  "DATA_LOSS",
  "UNAUTHENTICATED",
];

export function codeNameOf(err: unknown): string {
  if (err === undefined) return "OK";
  const code = statusCodeOf(err);
  return CODE_NAMES[code] ?? String(code);
}

// Wall-clock start plus a monotonic offset: span starts are comparable within a trace even
// if the clock steps, and still read as Unix times.
const spanClockNs = monotonicClockNs();

// Ids are drawn when first read, not when a span opens: the trace of a polled read is mostly
// never shown, and drawing its two ids was a tenth of the tracer's cost per call. The
// counter in each id keeps them unique whenever they are drawn.
class Trace implements TraceRecord {
  readonly spans: SpanRecord[] = [];
  private id: string | undefined;

  get traceId(): string {
    return (this.id ??= newTraceId());
  }
}

class Span implements SpanRecord {
  private id: string | undefined;
  durationNs?: bigint;
  status = "OK";
  error = "";

  constructor(
    readonly parentSpanId: string,
    readonly name: string,
    readonly startNs: bigint,
    readonly attributes: Record<string, string>,
  ) {}

  get spanId(): string {
    return (this.id ??= newSpanId());
  }
}

export class Tracer {
  private readonly als = new AsyncLocalStorage<Active>();
  private readonly ring: TraceRecord[] = [];
  /** Traces whose root span is still open, by id: remote spans may arrive before they finish. */
  private readonly active = new Map<string, TraceRecord>();
  private readonly exporters: TraceExporter[] = [];
  /** The span whose synchronous part is running, if any. */
  private sync: Active | undefined;
  /** Deep roots running; AsyncLocalStorage is enabled while there is one. */
  private deepRoots = 0;

  constructor(private readonly capacity: number) {}

  /** Sends every finished trace to `fn` too (e.g. the OTLP exporter). */
  addExporter(fn: TraceExporter): void {
    this.exporters.push(fn);
  }

  /** The current span: the one whose synchronous part runs, else AsyncLocalStorage's. */
  private current(): Active | undefined {
    return this.sync ?? (this.deepRoots > 0 ? this.als.getStore() : undefined);
  }

  /** The trace id of the current call, if any. */
  currentTraceId(): string | undefined {
    return this.current()?.trace.traceId;
  }

  /** The trace and span ids of the current span, if any (e.g. to send along to a shim). */
  currentIds(): { traceId: string; spanId: string } | undefined {
    const a = this.current();
    return a ? { traceId: a.trace.traceId, spanId: a.span.spanId } : undefined;
  }

  /** Runs `fn` as the root span of a new trace (one CRI call); deep unless `opts.shallow`. */
  root<T>(name: string, attributes: Record<string, string>, fn: () => Promise<T>, opts: RootOptions = {}): Promise<T> {
    const trace: TraceRecord = new Trace();
    const deep = !opts.shallow;
    // Remote spans come from shims, which only deep calls reach (a shallow root's late ones
    // would still find it in the ring).
    if (deep) this.active.set(trace.traceId, trace);
    if (deep) this.deepRoots++;
    return this.run(trace, "", name, attributes, fn, deep, () => {
      // The last deep root ends: no async hook until the next one (Node 20 keeps it on otherwise).
      if (deep && --this.deepRoots === 0) this.als.disable();
      this.finish(trace, deep);
    });
  }

  /**
   * Appends a span measured elsewhere under its parent, in the trace that is still running or
   * already sits in the ring buffer. Spans of unknown (or evicted) traces or parents are dropped:
   * returns whether it was kept. A span added to a finished trace goes to the exporters alone.
   */
  addRemoteSpan(r: RemoteSpan): boolean {
    const running = this.active.get(r.traceId);
    const trace = running ?? this.kept().findLast((t) => t.traceId === r.traceId);
    if (!trace) return false;
    const parentAt = trace.spans.findIndex((sp) => sp.spanId === r.parentSpanId);
    if (parentAt < 0) return false;
    const { error, ...attributes } = r.attributes;
    const span: SpanRecord = {
      spanId: newSpanId(),
      parentSpanId: r.parentSpanId,
      name: r.name,
      startNs: r.startNs,
      durationNs: r.durationNs,
      status: error ? "UNKNOWN" : "OK",
      error: error ?? "",
      attributes,
    };
    // Keep start order, but never ahead of the parent (the two clocks may differ slightly).
    let at = trace.spans.length;
    while (at > parentAt + 1 && trace.spans[at - 1]!.startNs > span.startNs) at--;
    trace.spans.splice(at, 0, span);
    if (!running) for (const e of this.exporters) e({ traceId: trace.traceId, spans: [span] });
    return true;
  }

  /** Runs `fn` as a child span of the current one; outside a trace it just runs `fn`. */
  span<T>(name: string, attributes: Record<string, string>, fn: () => Promise<T>): Promise<T> {
    const parent = this.current();
    if (!parent) return fn();
    return this.run(parent.trace, parent.span.spanId, name, attributes, fn, parent.deep, () => undefined);
  }

  private run<T>(
    trace: TraceRecord,
    parentSpanId: string,
    name: string,
    attributes: Record<string, string>,
    fn: () => Promise<T>,
    deep: boolean,
    done: () => void,
  ): Promise<T> {
    const span: SpanRecord = new Span(parentSpanId, name, spanClockNs(), attributes);
    trace.spans.push(span);
    const end = (err: unknown) => {
      span.durationNs = spanClockNs() - span.startNs;
      if (err !== undefined) {
        span.status = codeNameOf(err);
        span.error = err instanceof Error ? err.message : String(err);
      }
      done();
    };
    // fn starts right here, with this span current for its synchronous part (and, when deep,
    // in AsyncLocalStorage for the rest); a synchronous throw is a rejection like any other.
    const active: Active = { trace, span, deep };
    const outer = this.sync;
    this.sync = active;
    let result: Promise<T>;
    try {
      result = Promise.resolve(deep ? this.als.run(active, fn) : fn());
    } catch (err) {
      result = Promise.reject(err);
    } finally {
      this.sync = outer;
    }
    return result.then(
      (v) => {
        end(undefined);
        return v;
      },
      (err: unknown) => {
        end(err ?? new Error("rejected without a reason"));
        throw err;
      },
    );
  }

  private finish(trace: TraceRecord, deep: boolean): void {
    if (deep) this.active.delete(trace.traceId);
    this.ring.push(trace);
    // Evicted in batches: a splice off the front on every call costs a copy of the whole buffer.
    if (this.ring.length > 2 * this.capacity) this.ring.splice(0, this.ring.length - this.capacity);
    for (const e of this.exporters) e(trace);
  }

  /** The last `capacity` finished traces, oldest first (the ring may hold up to twice that). */
  private kept(): TraceRecord[] {
    return this.ring.length > this.capacity ? this.ring.slice(this.ring.length - this.capacity) : this.ring;
  }

  /** The most recent finished traces, oldest first; optionally only roots whose name contains `nameContains`. */
  recent(limit: number, nameContains = ""): TraceRecord[] {
    const kept = this.kept();
    const match = nameContains ? kept.filter((t) => t.spans[0]?.name.includes(nameContains)) : kept;
    return limit > 0 ? match.slice(-limit) : [...match];
  }

  /** A finished trace by id or unique id prefix. */
  find(idOrPrefix: string): TraceRecord[] {
    return this.kept().filter((t) => t.traceId.startsWith(idOrPrefix.toLowerCase()));
  }
}
