// A CNI ADD that outlives a SIGKILLed berthd (issue 13 item 9): berthd runs each plugin in its
// own process group, so killing berthd leaves a running ADD behind. Here the bridge plugin is a
// wrapper that stops itself (SIGSTOP) at the start of ADD, standing for a slow plugin; berthd is
// killed while it waits, and the restarted berthd must end it before rolling the pod back. The
// plugin is then let go (SIGCONT, when it is still there): an ADD finishing after the rollback
// would reserve an IP and make links for a pod that no longer exists.
import assert from "node:assert/strict";
import {
  chmodSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { useCriEnv } from "../helpers/cri-fixture.js";
import { until, type CriEnv } from "../helpers/cri.js";

const bin = mkdtempSync(join(tmpdir(), "berth-cnibin-"));
for (const p of readdirSync("/usr/lib/cni")) if (p !== "bridge") symlinkSync(join("/usr/lib/cni", p), join(bin, p));
// While <bin>/hold exists, ADD opens the pod's netns (as the real plugin does first thing),
// writes its pid and stops itself; let go, it runs the real plugin on the namespace it holds,
// whatever became of the pinned file meanwhile.
writeFileSync(
  join(bin, "bridge"),
  `#!/bin/sh
if [ "$CNI_COMMAND" = ADD ] && [ -e "${bin}/hold" ]; then
  exec 3<"$CNI_NETNS"
  echo $$ > "${bin}/held.pid"
  kill -STOP $$
  CNI_NETNS=/proc/self/fd/3 exec /usr/lib/cni/bridge
fi
exec /usr/lib/cni/bridge
`,
);
chmodSync(join(bin, "bridge"), 0o755);
after(() => rmSync(bin, { recursive: true, force: true }));

let env: CriEnv;
useCriEnv({ bridge: "berthstale0", subnet: "10.234.92.0/24", cniBinDir: bin }, (e) => (env = e));

function processState(pid: number): string | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, "utf8");
    return s.slice(s.lastIndexOf(")") + 2).split(" ")[0];
  } catch {
    return undefined;
  }
}

const gone = (pid: number) => {
  const s = processState(pid);
  return s === undefined || s === "Z";
};

test(
  "a CNI ADD left running by a killed berthd is ended before the pod is rolled back",
  { timeout: 300_000 },
  async () => {
    writeFileSync(join(bin, "hold"), "");
    const run = env.runPod("stale-add").then(
      () => "completed",
      (err: Error) => `failed: ${err.message.split("\n")[0]}`,
    );
    const pid = await until(
      () => (existsSync(join(bin, "held.pid")) ? Number(readFileSync(join(bin, "held.pid"), "utf8")) : 0),
      "the bridge plugin's ADD to start",
      60_000,
    );
    await until(() => processState(pid) === "T", "the plugin to stop itself");
    rmSync(join(bin, "hold"));
    env.d.kill("SIGKILL");
    await env.d.exited;
    console.log(`RunPodSandbox ${await run}`);
    try {
      await env.restart();
      assert.ok(gone(pid), `the plugin berthd left running (pid ${pid}) was ended at start (${processState(pid)})`);
      assert.match(env.d.logs(), /killed a CNI plugin a previous berthd left running/);
    } finally {
      // Without the fix: the slow plugin gets to finish its ADD now, after the rollback.
      if (!gone(pid)) {
        process.kill(pid, "SIGCONT");
        await until(() => gone(pid), "the released plugin to finish");
      }
    }
    // The pod is rolled back, and nothing of it is left: no netns, no IP, no link on the bridge.
    assert.deepEqual((await env.d.rt.listPodSandbox({})).items, []);
    assert.deepEqual(env.leftovers(), [], "nothing of the interrupted pod is left");
    // The network works for the next pod.
    const pod = await env.runPod("after-stale-add");
    await env.d.rt.stopPodSandbox({ podSandboxId: pod.id });
    await env.d.rt.removePodSandbox({ podSandboxId: pod.id });
  },
);
