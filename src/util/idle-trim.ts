// Gives memory back once a long-lived process (berthd, the serving shim) goes quiet after work.
//
// V8 collects the old generation when it nears a limit it sets itself, not when the program
// stops allocating: after a burst (a pod churn, 20 pods started) berthd sat for good on 6-8 MiB
// of dead objects in old space and a young generation grown to 2 MiB, and glibc kept the freed
// C memory (Buffers' backing stores, zlib, the addon) in its arenas. Measured in berthd
// (bench/memory-idle.bench.ts with the inspector attached; process.memoryUsage, then a full GC,
// then malloc_trim(0), 10 s after each burst):
//
//                        heap used -> after full GC   RSS: after GC, after trim
//   idle                 13.7 -> 13.5 MiB             69.2 -> 69.1 -> 67.2 MiB
//   with 20 pods         21.5 -> 19.4                 82.7 -> 76.6 -> 75.5
//   after a 40-pod churn 25.7 -> 19.9                 84.4 -> 76.9 -> 76.1
//
// So once the event loop has been quiet for one check and the heap's committed size (with
// external memory) has grown by minGrowthBytes since the last trim, this runs a full GC (two,
// see below) and malloc_trim(0). A process that keeps serving never meets the quiet test; one
// that idles pays one trim (tens of milliseconds for a 20 MiB heap) per burst, and none while
// nothing grows. The checks are one
// unref'd timer, so they never keep a process alive.
//
// berthd's private memory (smaps Private_*, MiB) with it and without (the same build, a switch
// in between; node dist/bench/memory-idle.bench.js 10 20 40, run in turns at load 4.6-9.5):
//
//                        with 20 pods          after a 40-pod churn
//   without (6 runs)     32.1-38.2 (med 36.9)  31.0-39.8 (med 35.1)
//   with (3 runs)        30.3-33.3 (med 31.4)  29.5-31.5 (med 31.0)
//
// Without it the figure depends on where V8's own GC timing happens to leave the heap; with it
// berthd sits at the floor of its live heap. The inspector confirmed the trim ran: 10 s after
// the churn, a forced GC found nothing more to free (heap used 19.8 -> 19.6 MiB, RSS unchanged).
// malloc_trim alone (gdb, `call malloc_trim(0)`) gave 1-4 MiB of RSS back; the rest is the GC.
//
// The GC runs twice: after one, old space kept its fragmented pages (after the churn 19.0 MiB
// committed for 14.2 used, RSS 77.8 MiB; the inspector's memory-reducing collection then took
// it to 14.7 committed, RSS 71.7). A plain script that keeps one object in eight of 30 MiB
// (heapTotal / RSS MiB): one gc() 25.5 / 69.8, two 12.0 / 56.4, the inspector's 11.0 / 55.2.
// berthd after the 40-pod churn, one collection against two, 2 runs each at load 1.5-4: private
// 33.7, 33.7 against 29.7, 30.2 MiB; RSS 77.4, 77.3 against 73.4, 73.8. The pair takes 25-40 ms
// for a 12 MiB heap on this machine, once per burst.
//
// The GC needs node's --expose-gc (bin/berthd's shebang, src/shim/node-flags.ts): without it
// (other node flags given for an experiment) only the malloc trim runs.
import { getHeapStatistics } from "node:v8";
import { performance } from "node:perf_hooks";

export interface IdleTrimOptions {
  /** How often the loop's utilization is read (ms). */
  intervalMs?: number;
  /** The event-loop utilization (0-1) over one interval under which the process counts as quiet. */
  quietUtilization?: number;
  /**
   * Growth of the heap's committed (physical) size plus external memory since the last trim
   * that makes one worthwhile: what a trim can give back is committed pages, dead objects or not
   * (a young generation grown to 2 MiB, fragmented old-space pages).
   */
  minGrowthBytes?: number;
  /** A full garbage collection: node's `gc` (given --expose-gc) unless told. */
  gc?: () => void;
  /** malloc_trim(0); none when the native addon is not at hand. */
  mallocTrim?: () => void;
  /** Told after each trim: the heap's committed bytes (with external) before and after, and the time it took. */
  onTrim?: (t: { beforeBytes: number; afterBytes: number; ms: number }) => void;
}

export interface IdleTrim {
  stop(): void;
  /** Trims done so far. */
  readonly count: number;
}

const committedBytes = () => {
  const h = getHeapStatistics();
  return h.total_physical_size + h.external_memory;
};

export function startIdleTrim(opts: IdleTrimOptions = {}): IdleTrim {
  const intervalMs = opts.intervalMs ?? 1000;
  const quiet = opts.quietUtilization ?? 0.05;
  const minGrowth = opts.minGrowthBytes ?? 2 * 1024 * 1024;
  const gc = opts.gc ?? (globalThis as { gc?: () => void }).gc;
  let baseline = committedBytes();
  let elu = performance.eventLoopUtilization();
  let count = 0;
  const timer = setInterval(() => {
    const window = performance.eventLoopUtilization(elu);
    elu = performance.eventLoopUtilization();
    const before = committedBytes();
    if (window.utilization >= quiet || before - baseline < minGrowth) {
      // The heap can also shrink by V8's own collections: the next burst counts from there.
      if (before < baseline) baseline = before;
      return;
    }
    const t0 = performance.now();
    // Twice: one full GC frees the dead objects but leaves their pages committed and
    // fragmented; the second compacts and releases them, as V8's memory-reducing GC does.
    gc?.();
    gc?.();
    opts.mallocTrim?.();
    baseline = committedBytes();
    count++;
    opts.onTrim?.({ beforeBytes: before, afterBytes: baseline, ms: performance.now() - t0 });
    // The trim's own time is not the program's: the next window starts after it.
    elu = performance.eventLoopUtilization();
  }, intervalMs);
  timer.unref();
  return {
    stop: () => clearInterval(timer),
    get count() {
      return count;
    },
  };
}
