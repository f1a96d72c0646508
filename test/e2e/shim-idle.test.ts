// berthd keeps an idle berth shim warm for its next pod; if berthd then dies, nobody calls
// Shutdown. The shim must then end by itself: no task and no client for the grace period.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { SHIM_BIN, ShimHarness, alive, sleep, until } from "../helpers/shim.js";

test("an idle shim with no client exits after the grace period and removes its socket", async () => {
  const h = await ShimHarness.create("berth-idle");
  try {
    const bundle = join(h.root, "bundles", "idle1");
    mkdirSync(bundle, { recursive: true });
    const r = spawnSync(
      SHIM_BIN,
      ["-namespace", h.namespace, "-address", h.address, "-publish-binary", "/bin/true", "-id", "idle1", "start"],
      { cwd: bundle, env: { ...h.env, BERTH_SHIM_IDLE_EXIT_MS: "1000" }, encoding: "utf8" },
    );
    assert.equal(r.status, 0, r.stderr);
    const address = r.stdout.trim();
    const { conn, task } = await h.connect(address);
    const { shimPid } = await task.connect({ id: "" }, h.md);
    assert.ok(alive(shimPid));
    // A connected client keeps it, even with no task.
    await sleep(2500);
    assert.ok(alive(shimPid), "a shim with a client stays");
    conn.close();
    await until(() => !alive(shimPid), "the idle shim to exit", 15_000);
    assert.throws(() => statSync(address.slice("unix://".length)), /ENOENT/);
  } finally {
    await h.cleanup();
  }
});
