// The tracer's two kinds of root (src/observability/tracer.ts): deep roots find their parent
// through AsyncLocalStorage, which is enabled only while one runs; shallow roots (the reads
// kubelet polls) find it through the synchronous part of each span alone.
import assert from "node:assert/strict";
import { test } from "node:test";
import { setImmediate as tick } from "node:timers/promises";
import { Tracer, type TraceRecord } from "../../../src/observability/tracer.js";

const names = (t: TraceRecord) => t.spans.map((s) => s.name);
const parentOf = (t: TraceRecord, name: string) => {
  const span = t.spans.find((s) => s.name === name)!;
  return t.spans.find((s) => s.spanId === span.parentSpanId)?.name;
};

test("a shallow root nests the spans opened before its first await, and only those", async () => {
  const tracer = new Tracer(10);
  const v = await tracer.root(
    "read",
    {},
    async () => {
      const a = tracer.span("before", {}, async () => {
        // a child's own synchronous part sees the child
        const inner = tracer.span("inner", {}, async () => 1);
        await tick();
        return inner;
      });
      await tick();
      await tracer.span("after", {}, async () => undefined);
      return a;
    },
    { shallow: true },
  );
  assert.equal(v, 1);
  const [t] = tracer.recent(10);
  assert.deepEqual(names(t!), ["read", "before", "inner"]);
  assert.equal(parentOf(t!, "before"), "read");
  assert.equal(parentOf(t!, "inner"), "before");
  assert.ok(t!.spans.every((s) => s.durationNs !== undefined && s.status === "OK"));
});

test("overlapping deep roots keep their children after the first one ends; a shallow one beside them stays apart", async () => {
  const tracer = new Tracer(10);
  let releaseLong!: () => void;
  const longGate = new Promise<void>((r) => (releaseLong = r));
  const long = tracer.root("long", {}, async () => {
    await tracer.span("long.a", {}, async () => tick());
    await longGate;
    // The short deep root ended meanwhile: AsyncLocalStorage must still carry this trace.
    await tracer.span("long.b", {}, async () => {
      await tick();
      await tracer.span("long.b.c", {}, async () => undefined);
    });
  });
  await tracer.root("short", {}, async () => {
    await tick();
    await tracer.span("short.a", {}, async () => undefined);
  });
  const shallow = tracer.root(
    "poll",
    {},
    async () => {
      await tick();
      // after an await a shallow root has no current span, whatever deep root runs beside it
      assert.equal(tracer.currentIds(), undefined);
      await tracer.span("poll.late", {}, async () => undefined);
    },
    { shallow: true },
  );
  releaseLong();
  await Promise.all([long, shallow]);
  // No root runs: a span is just its function.
  assert.equal(await tracer.span("orphan", {}, async () => 7), 7);
  assert.equal(tracer.currentIds(), undefined);

  const byRoot = new Map(tracer.recent(10).map((t) => [t.spans[0]!.name, t]));
  assert.deepEqual(names(byRoot.get("short")!), ["short", "short.a"]);
  assert.deepEqual(names(byRoot.get("long")!), ["long", "long.a", "long.b", "long.b.c"]);
  assert.equal(parentOf(byRoot.get("long")!, "long.b.c"), "long.b");
  assert.deepEqual(names(byRoot.get("poll")!), ["poll"]);

  // A deep root after all of them ended still nests through awaits (AsyncLocalStorage re-enabled).
  await tracer.root("again", {}, async () => {
    await tick();
    await tracer.span("again.a", {}, async () => undefined);
  });
  assert.deepEqual(names(tracer.recent(1)[0]!), ["again", "again.a"]);
});

test("a root whose function throws synchronously ends its span with the error and rejects", async () => {
  const tracer = new Tracer(10);
  for (const shallow of [false, true]) {
    await assert.rejects(
      tracer.root(
        "sync-throw",
        {},
        () => {
          throw new Error("at once");
        },
        { shallow },
      ),
      /at once/,
    );
    const [t] = tracer.recent(1);
    assert.equal(t!.spans[0]!.status, "UNKNOWN");
    assert.equal(t!.spans[0]!.error, "at once");
  }
  // The failed deep root released AsyncLocalStorage's count: a new one still nests.
  await tracer.root("after", {}, async () => {
    await tick();
    await tracer.span("after.a", {}, async () => undefined);
  });
  assert.deepEqual(names(tracer.recent(1)[0]!), ["after", "after.a"]);
});

test("trace and span ids are drawn once, on first read, and differ between traces", async () => {
  const tracer = new Tracer(10);
  for (const shallow of [false, true]) {
    await tracer.root("a", {}, async () => tracer.span("b", {}, async () => undefined), { shallow });
  }
  const [deep, shallow] = tracer.recent(10);
  for (const t of [deep!, shallow!]) {
    assert.match(t.traceId, /^[0-9a-f]{32}$/);
    assert.equal(t.traceId, t.traceId, "the same id on every read");
    assert.match(t.spans[0]!.spanId, /^[0-9a-f]{16}$/);
    assert.equal(t.spans[1]!.parentSpanId, t.spans[0]!.spanId);
    assert.notEqual(t.spans[1]!.spanId, t.spans[0]!.spanId);
  }
  assert.notEqual(deep!.traceId, shallow!.traceId);
  assert.deepEqual(
    tracer.find(shallow!.traceId.slice(0, 12)).map((t) => t.traceId),
    [shallow!.traceId],
  );
});
