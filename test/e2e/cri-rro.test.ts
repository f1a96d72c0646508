// Recursive read-only mounts (Mount.recursive_read_only, kubelet's recursiveReadOnly: Enabled)
// through the CRI with real runc. Status announces them per handler from the runtime's own
// `features` and berthd's start probe (a recursively read-only mount made on this kernel):
// Debian's runc 1.1.5 lists "rro" (runc has had it since 1.1.0) as runc 1.5 does; a handler
// whose runtime does not list it (here runc behind a wrapper that drops "rro" from its
// `features` answer) announces false and refuses such a mount. In a container, a write in a
// submount of the volume fails where a plain read-only bind lets it through.

import assert from "node:assert/strict";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { status } from "@grpc/grpc-js";
import { MountPropagation } from "../../src/gen/cri/runtime/v1/api.js";
import * as sys from "../../src/sys/index.js";
import type { CriEnv } from "../helpers/cri.js";
import { useCriEnv } from "../helpers/cri-fixture.js";
import { goTool } from "../helpers/go-tools.js";

const RUNC_15 = goTool("runc-1.5", "runc");
const tools = mkdtempSync(join(tmpdir(), "berth-rro-tools-"));
const NO_RRO = join(tools, "runc-no-rro");
// runc as it is, except that its `features` answer lists no "rro" (one option per line).
writeFileSync(
  NO_RRO,
  `#!/bin/sh
for a in "$@"; do
  if [ "$a" = features ]; then runc "$@" | sed '/^ *"rro",$/d'; exit; fi
done
exec runc "$@"
`,
);
chmodSync(NO_RRO, 0o755);

let env: CriEnv;
useCriEnv(
  {
    bridge: "berthrro0",
    subnet: "10.234.85.0/24",
    config: `
[runtime.handlers."runc-1.5"]
binary_name = "${RUNC_15}"
root = "{{dir}}/runc-1.5"
[runtime.handlers."no-rro"]
binary_name = "${NO_RRO}"
root = "{{dir}}/no-rro"
`,
  },
  (e) => (env = e),
);
after(() => rmSync(tools, { recursive: true, force: true }));

/** Runs `cmd` in the container; its exit code and output. */
async function run(cid: string, cmd: string): Promise<{ code: number; out: string }> {
  const r = await env.d.rt.execSync({ containerId: cid, cmd: ["sh", "-c", cmd], timeout: 20n }, { deadlineMs: 60_000 });
  return { code: r.exitCode, out: (r.stdout.toString() + r.stderr.toString()).trim() };
}

describe("recursive read-only mounts", () => {
  // A host directory with a tmpfs mounted inside it: the submount a read-only bind must reach.
  let vol: string;
  let sub: string;
  before(() => {
    vol = mkdtempSync(join(tmpdir(), "berth-rro-vol-"));
    sub = join(vol, "sub");
    mkdirSync(sub);
    sys.mount("berth-rro-test", sub, "tmpfs", 0, "size=1m");
  });
  after(() => {
    try {
      sys.umount2(sub, sys.MNT_DETACH);
    } finally {
      rmSync(vol, { recursive: true, force: true });
    }
  });

  test("Status announces them per handler: both runc versions (also behind containerd's runc shim), not a runtime that does not list rro, not runsc", async () => {
    const s = await env.d.rt.status({});
    const rro = Object.fromEntries(s.runtimeHandlers.map((h) => [h.name, h.features?.recursiveReadOnlyMounts]));
    assert.deepEqual(rro, { runc: true, "": true, "runc-v2": true, runsc: false, "runc-1.5": true, "no-rro": false });
  });

  for (const handler of ["runc-1.5", "runc"]) {
    test(`on ${handler}, a write in a submount of a recursively read-only volume fails; a plain read-only one lets it through`, async () => {
      const pod = await env.runPod(`rro-${handler}`, {}, handler);
      try {
        const mount = (containerPath: string, recursiveReadOnly: boolean) => ({
          containerPath,
          hostPath: vol,
          readonly: true,
          recursiveReadOnly,
          propagation: MountPropagation.PROPAGATION_PRIVATE,
        });
        const cid = await env.runContainer(pod, "app", ["sleep", "3600"], {
          mounts: [mount("/rro", true), mount("/ro", false)],
        });
        const top = await run(cid, "touch /rro/top");
        assert.notEqual(top.code, 0);
        assert.match(top.out, /Read-only file system/);
        const inSub = await run(cid, "touch /rro/sub/from-rro");
        assert.notEqual(inSub.code, 0, "the submount of a recursively read-only volume is read-only too");
        assert.match(inSub.out, /Read-only file system/);
        assert.equal(existsSync(join(sub, "from-rro")), false);
        // the contrast: "ro" alone makes only the volume's own mount read-only
        assert.equal((await run(cid, "touch /ro/sub/from-ro")).code, 0);
        assert.equal(existsSync(join(sub, "from-ro")), true);
        rmSync(join(sub, "from-ro"));
      } finally {
        await env.d.rt.stopPodSandbox({ podSandboxId: pod.id }, { deadlineMs: 120_000 });
        await env.d.rt.removePodSandbox({ podSandboxId: pod.id }, { deadlineMs: 120_000 });
      }
      assert.deepEqual(env.leftovers(), []);
    });
  }

  test("a handler whose runtime does not list rro refuses such a mount with FAILED_PRECONDITION, and makes no container", async () => {
    const pod = await env.runPod("rro-refused", {}, "no-rro");
    try {
      const config = env.containerConfig("app", ["sleep", "3600"], {
        mounts: [
          {
            containerPath: "/rro",
            hostPath: vol,
            readonly: true,
            recursiveReadOnly: true,
            propagation: MountPropagation.PROPAGATION_PRIVATE,
          },
        ],
      });
      await assert.rejects(
        env.d.rt.createContainer({ podSandboxId: pod.id, config, sandboxConfig: pod.config }),
        (err: { code?: number; details?: string }) => {
          assert.equal(err.code, status.FAILED_PRECONDITION, err.details);
          assert.match(err.details ?? "", /recursively read-only, which runtime handler "no-rro" cannot make/);
          return true;
        },
      );
      assert.deepEqual((await env.d.rt.listContainers({ filter: { podSandboxId: pod.id } })).containers, []);
    } finally {
      await env.d.rt.stopPodSandbox({ podSandboxId: pod.id }, { deadlineMs: 120_000 });
      await env.d.rt.removePodSandbox({ podSandboxId: pod.id }, { deadlineMs: 120_000 });
    }
  });
});
