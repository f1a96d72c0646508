// The serving shim runs under the node flags chosen for it (src/shim/node-flags.ts), and a node
// binary that rejects one of them still gets a serving shim: `start` retries without them.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { SHIM_NODE_FLAGS } from "../../src/shim/node-flags.js";
import { SHIM_BIN, ShimHarness, alive } from "../helpers/shim.js";

/** Runs `start` with extra environment, connects, and returns the serving shim's command line. */
async function startAndInspect(h: ShimHarness, id: string, env: NodeJS.ProcessEnv): Promise<string[]> {
  const bundle = join(h.root, "bundles", id);
  mkdirSync(bundle, { recursive: true });
  const r = spawnSync(
    SHIM_BIN,
    ["-namespace", h.namespace, "-address", h.address, "-publish-binary", "/bin/true", "-id", id, "start"],
    { cwd: bundle, env: { ...h.env, ...env }, encoding: "utf8" },
  );
  assert.equal(r.status, 0, r.stderr);
  const { task } = await h.connect(r.stdout.trim());
  const { shimPid } = await task.connect({ id: "" }, h.md);
  assert.ok(alive(shimPid), "the serving shim answers");
  return readFileSync(`/proc/${shimPid}/cmdline`, "utf8").split("\0");
}

test("the serving shim runs under its node flags", async () => {
  const h = await ShimHarness.create("berth-flags");
  try {
    const argv = await startAndInspect(h, "flags1", {});
    const main = argv.findIndex((a) => a.endsWith("/shim/main.js"));
    assert.deepEqual(argv.slice(1, main), [...SHIM_NODE_FLAGS]);
  } finally {
    await h.cleanup();
  }
});

test("a node flag the node binary rejects does not keep the shim from starting", async () => {
  const h = await ShimHarness.create("berth-badflag");
  try {
    const argv = await startAndInspect(h, "flags2", {
      BERTH_SHIM_NODE_FLAGS: "--max-semi-space-size=1 --no-such-flag-berth",
    });
    assert.ok(!argv.includes("--no-such-flag-berth"), `started without the flags: ${argv.join(" ")}`);
  } finally {
    await h.cleanup();
  }
});
