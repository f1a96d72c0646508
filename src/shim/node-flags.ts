// The node (V8) flags of the serving shim, chosen by measurement (issue 15): the serving shim is
// one long-lived process per group whose fixed cost every node pays, and whose work is small
// (ttrpc calls, starting runc and monitors), so it trades a little CPU for memory.
//
// bench/memory-idle.bench.ts (node dist/bench/memory-idle.bench.js 10 20 40 with
// BERTH_SHIM_NODE_FLAGS=...; 2 shared cores at load 10-20, one run per figure, ranges over
// runs). The serving shim's PSS / RSS in MiB idle and after a 40-pod churn, the shim side
// (shim + 40 monitors) with 20 pods, and the shim side's CPU for 20 container create+start and
// for a 40-pod churn:
//
//   flags                             idle           after churn    20 pods        create+start  churn
//   (none; 4 runs)                    17-21 / 57-60  24-30 / 65-69  23-26 / 91-94  220-320 ms    780-930 ms
//   --max-semi-space-size=1 (5 runs)  15-20 / 56-59  23-25 / 64-66  21-24 / 91-93  260-310 ms    750-1050 ms
//   semi=1 --optimize-for-size        15 / 56        21 / 62        24 / 93        200 ms        770 ms
//   semi=1 --single-threaded-gc
//     --v8-pool-size=1 (2 runs)       17 / 55-58     23 / 63-64     22-24 / 92     260-290 ms    880-1020 ms
//   semi=1 --jitless                  14 / 50        20 / 57        20 / 85        280 ms        890 ms
//   semi=1 --lite-mode (8 runs; taken)14-18 / 50-51  18-22 / 54-56  21-22 / 85-86  220-350 ms    860-1130 ms
//
// Lite mode (no optimizing compiler, lazy feedback) takes 5-9 MiB of RSS and 2-6 MiB of PSS off
// the shim. Its CPU cost is inside the spread of these runs but shows in the medians of
// create+start: 310 against 270 ms of shim CPU for 20 containers (about 2 ms a container); the
// churn 895 against 885 ms. --no-expose-wasm only silences V8's warning that lite mode turns
// WebAssembly off (the shim runs none). Not taken: --optimize-for-size and one GC thread (within
// noise here), heap limits (a shim serving many pods must not die of one).
//
// --expose-gc: the full GC src/util/idle-trim.ts runs once the shim is quiet after a burst.
//
// BERTH_SHIM_NODE_FLAGS, when set, replaces them (space-separated; empty for none).
export const SHIM_NODE_FLAGS: readonly string[] = [
  "--max-semi-space-size=1",
  "--lite-mode",
  "--no-expose-wasm",
  "--expose-gc",
];

export function shimNodeFlags(env: NodeJS.ProcessEnv = process.env): string[] {
  const given = env.BERTH_SHIM_NODE_FLAGS;
  if (given !== undefined) return given.split(/\s+/).filter(Boolean);
  return [...SHIM_NODE_FLAGS];
}

/** node's exit code for an option it does not know ("bad option"). */
export const BAD_OPTION_EXIT = 9;
