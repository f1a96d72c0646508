// `containerd-shim-berth-v2 start` waits for the serving shim it spawned to answer, but not
// forever: a serving shim that never answers (here one that stops itself with SIGSTOP before it
// runs any of its code) is killed after BERTH_SHIM_START_TIMEOUT_MS, and `start` fails naming
// the shim's log. Before the bound, a start once hung 25 minutes.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, readdirSync } from "node:fs";
import { join } from "node:path";

import { makeBundle } from "../helpers/bundle.js";
import { SHIM_BIN, ShimHarness, until } from "../helpers/shim.js";

let h: ShimHarness | undefined;

after(async () => {
  await h?.cleanup();
});

test("a serving shim that never answers is killed after the bound and start fails naming its log", async () => {
  h = await ShimHarness.create("berth-start-timeout");
  const bundle = join(h.root, "stuck");
  mkdirSync(bundle, { recursive: true });
  makeBundle(bundle, { args: ["true"] });
  const r = spawnSync(
    SHIM_BIN,
    [
      "-namespace",
      h.namespace,
      "-address",
      h.address,
      "-publish-binary",
      "/usr/bin/containerd",
      "-id",
      "stuck",
      "start",
    ],
    {
      cwd: bundle,
      env: {
        ...h.env,
        BERTH_SHIM_START_TIMEOUT_MS: "1500",
        // The serving shim stops itself before its own code runs: it neither answers nor exits.
        BERTH_SHIM_NODE_FLAGS: "--import=data:text/javascript,process.kill(process.pid,'SIGSTOP')",
      },
      encoding: "utf8",
      timeout: 60_000,
    },
  );
  assert.notEqual(r.status, 0, `start should fail; stdout ${r.stdout}`);
  assert.match(r.stderr, /serving shim did not start \(no answer within 1\.5 s, killed pid \d+\)/);
  const logs = readdirSync(h.socketDir).filter((f) => f.endsWith(".log"));
  assert.equal(logs.length, 1);
  assert.ok(r.stderr.includes(join(h.socketDir, logs[0]!)), `the error names the log: ${r.stderr}`);
  // Nothing is left running, and no socket was claimed.
  await until(() => h!.ourProcesses().length === 0, "the stuck shim to be gone");
  assert.deepEqual(
    readdirSync(h.socketDir).filter((f) => f.endsWith(".sock")),
    [],
  );
});
