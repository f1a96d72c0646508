// gVisor through berth's shim: create options choose runsc (containerd.runc.v1.Options
// binary_name). Here the sandbox needs `--network=none` (no pod network namespace is
// given); berth's shim passes extra global flags written after the binary name.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";

import { makeBundle } from "../helpers/bundle.js";
import { ShimHarness, alive, until } from "../helpers/shim.js";

let h: ShimHarness;
let runscRoot: string;

before(async () => {
  h = await ShimHarness.create();
  runscRoot = join(h.root, "runsc-root");
});

after(async () => {
  const ids =
    spawnSync("runsc", ["--root", runscRoot, "list", "-q"], { encoding: "utf8" }).stdout?.split("\n").filter(Boolean) ??
    [];
  for (const id of ids) spawnSync("runsc", ["--root", runscRoot, "delete", "-force", id]);
  await h.cleanup();
});

test("a container under runsc runs to completion with the right output and exit code", async () => {
  const dir = join(h.root, "gv");
  makeBundle(dir, { args: ["sh", "-c", "echo hello from gvisor; uname -r; exit 5"] });
  const address = h.start(dir, "gv");
  const { task } = await h.connect(address);
  const out = join(h.root, "gv.out");
  const { pid } = await task.create(
    {
      id: "gv",
      bundle: dir,
      rootfs: [],
      terminal: false,
      stdin: "",
      stdout: `file://${out}`,
      stderr: `file://${out}`,
      checkpoint: "",
      parentCheckpoint: "",
      options: h.options("runsc --network=none", runscRoot),
    },
    h.md,
  );
  assert.ok(pid > 0);
  await task.start({ id: "gv", execId: "" }, h.md);
  const w = await task.wait({ id: "gv", execId: "" }, h.md);
  assert.equal(w.exitStatus, 5);
  const text = readFileSync(out, "utf8");
  assert.match(text, /^hello from gvisor\n/);
  // gVisor's kernel, not the host's
  const hostRelease = readFileSync("/proc/sys/kernel/osrelease", "utf8").trim();
  assert.notEqual(text.split("\n")[1], hostRelease);
  await task.delete({ id: "gv", execId: "" }, h.md);
  const { shimPid } = await task.connect({ id: "" }, h.md);
  await task.shutdown({ id: "", now: false }, h.md);
  await until(() => !alive(shimPid), "the shim to exit");
});
