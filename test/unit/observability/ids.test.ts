// Trace and span ids (src/observability/ids.ts): the lengths OTLP and `berth trace` expect,
// never all zeros, never repeated within a process, and random in front (so short prefixes of
// different traces differ), across refills of the random pool.
import assert from "node:assert/strict";
import { test } from "node:test";
import { newSpanId, newTraceId } from "../../../src/observability/ids.js";

test("trace ids are 32 hex digits, span ids 16, none repeated or all zeros", () => {
  const traces = new Set<string>();
  const spans = new Set<string>();
  // 3 x 10,000 ids: several refills of the 4 KiB pool
  for (let i = 0; i < 10_000; i++) {
    const t = newTraceId();
    const s1 = newSpanId();
    const s2 = newSpanId();
    assert.match(t, /^[0-9a-f]{32}$/);
    assert.match(s1, /^[0-9a-f]{16}$/);
    assert.doesNotMatch(t, /^0+$/);
    assert.doesNotMatch(s1, /^0+$/);
    traces.add(t);
    spans.add(s1).add(s2);
  }
  assert.equal(traces.size, 10_000);
  assert.equal(spans.size, 20_000);
  // the first 8 hex digits (what a person types) are random: nearly all distinct
  const prefixes = new Set([...traces].map((t) => t.slice(0, 8)));
  assert.ok(prefixes.size > 9_900, `only ${prefixes.size} distinct 8-digit prefixes`);
});
