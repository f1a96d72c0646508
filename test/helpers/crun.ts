// Whether crun can run a container on this machine, and how. Probed once per test file with a
// tiny busybox bundle, with `crun run` itself, so a skip quotes crun's own words.
//
// crun 1.x refuses a hybrid cgroup layout (v1 controllers under /sys/fs/cgroup, a cgroup2 mount
// at /sys/fs/cgroup/unified) as soon as the v2 hierarchy has any controller, before it looks at
// --cgroup-manager or the spec's cgroupsPath, so no flag helps. What does: running crun in a
// mount namespace of its own where /sys/fs/cgroup/unified is unmounted, so crun sees a plain v1
// layout and manages the v1 hierarchies as runc does. The README's runtime handler section
// documents that wrapper; when plain crun refuses and the wrapper works, the tests run crun
// through it (named `crun`, so the shim still knows it for crun).
import { spawnSync } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { makeBundle } from "./bundle.js";

/** The wrapper the README's runtime handler section documents (the same command). */
export const CRUN_WRAPPER = `#!/bin/sh
# crun in a mount namespace without /sys/fs/cgroup/unified: it then sees cgroup v1 only
exec unshare --mount --propagation slave sh -c 'umount /sys/fs/cgroup/unified && exec crun "$@"' crun "$@"
`;

export interface CrunProbe {
  /** binary_name that runs containers here (plain "crun" or the wrapper's path), if any */
  binary: string | undefined;
  /** plain crun's own refusal to run a container here; "" when it runs them */
  refusal: string;
  /** why tests that need crun skip, or false */
  skip: string | false;
  /** Removes the wrapper, if one was written. */
  cleanup(): void;
}

export function probeCrun(): CrunProbe {
  const version = spawnSync("crun", ["--version"], { encoding: "utf8" });
  const none = { binary: undefined, refusal: "", cleanup: () => {} };
  if (version.error || version.status !== 0) return { ...none, skip: "crun is not installed (apt-get install crun)" };
  const dir = mkdtempSync(join(tmpdir(), "berth-crun-"));
  const cleanup = () => rmSync(dir, { recursive: true, force: true });
  const bundle = join(dir, "probe");
  makeBundle(bundle, { args: ["/bin/sh", "-c", "exit 3"], hostNetwork: true });
  const run = (binary: string, id: string) => {
    const r = spawnSync(binary, ["--root", join(dir, "root"), "run", "--bundle", bundle, id], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
      timeout: 30_000,
    });
    spawnSync(binary, ["--root", join(dir, "root"), "delete", "--force", id], { stdio: "ignore" });
    return { ok: r.status === 3, said: (r.stderr || r.stdout || r.error?.message || `exit ${r.status}`).trim() };
  };
  const plain = run("crun", "berth-crun-probe");
  rmSync(bundle, { recursive: true, force: true });
  if (plain.ok) return { binary: "crun", refusal: "", skip: false, cleanup };

  const wrapper = join(dir, "crun");
  writeFileSync(wrapper, CRUN_WRAPPER);
  chmodSync(wrapper, 0o755);
  makeBundle(bundle, { args: ["/bin/sh", "-c", "exit 3"], hostNetwork: true });
  const wrapped = run(wrapper, "berth-crun-probe-wrapped");
  rmSync(bundle, { recursive: true, force: true });
  rmSync(join(dir, "root"), { recursive: true, force: true });
  if (wrapped.ok) return { binary: wrapper, refusal: plain.said, skip: false, cleanup };
  cleanup();
  return {
    ...none,
    refusal: plain.said,
    skip: `crun cannot run a container here: "${plain.said}" (and through the README's wrapper: "${wrapped.said}")`,
  };
}
