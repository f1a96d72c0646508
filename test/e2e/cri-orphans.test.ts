// Recovery sweeps what no record owns (issue 13 item 9): leftovers of every kind a crash can
// separate from its record are planted in a stopped berthd's dirs, and the restarted berthd
// removes them (logging each), while a pod created before the restart keeps everything of its
// own and still works. A pod cgroup nothing in berthd's state names stays: under the shared
// /berth parent it may be another berthd's.
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { test } from "node:test";
import { ContainerState, PodSandboxState } from "../../src/gen/cri/runtime/v1/api.js";
import { isNetnsMounted } from "../../src/network/netns.js";
import { MNT_DETACH, mount, netnsCreate, umount2 } from "../../src/sys/index.js";
import { useCriEnv } from "../helpers/cri-fixture.js";
import type { CriEnv } from "../helpers/cri.js";

let env: CriEnv;
useCriEnv({ bridge: "berthorph0", subnet: "10.234.90.0/24" }, (e) => (env = e));

const newId = () => randomBytes(32).toString("hex");

/** The v1 hierarchies (and the unified one) where berth's pod cgroups live on this host. */
function berthHierarchies(): string[] {
  return readdirSync("/sys/fs/cgroup")
    .map((c) => join("/sys/fs/cgroup", c))
    .filter((p) => existsSync(join(p, "berth")));
}

function mountedAt(path: string): boolean {
  return readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .some((l) => l.split(" ")[4] === path);
}

function ipamDir(): string {
  return join(env.d.dir, "ipam", `berth-test-${env.opts.bridge}`);
}

function allocations(): Map<string, string> {
  const out = new Map<string, string>();
  if (!existsSync(ipamDir())) return out;
  for (const f of readdirSync(ipamDir()))
    if (/^\d+\.\d+\.\d+\.\d+$/.test(f)) out.set(f, readFileSync(join(ipamDir(), f), "utf8").split(/\r?\n/)[0]!);
  return out;
}

test(
  "a restart removes every leftover no record owns and leaves a running pod alone",
  { timeout: 300_000 },
  async () => {
    const pod = await env.runPod("orphans-live");
    const cid = await env.runContainer(pod, "sleeper", ["sleep", "1000"]);
    const live = await env.d.rt.podSandboxStatus({ podSandboxId: pod.id, verbose: true });
    const liveNetns = (JSON.parse(live.info.info!) as { netNamespacePath: string }).netNamespacePath;
    const liveIp = live.status!.network!.ip;
    assert.ok(await isNetnsMounted(liveNetns));
    assert.equal(allocations().get(liveIp), pod.id);
    const hierarchies = berthHierarchies();
    assert.ok(hierarchies.length > 0, "the running pod has its cgroups below /berth");

    env.d.kill("SIGTERM");
    await env.d.exited;

    const st = env.d.state;
    const emptyNetns = newId(); // the case: killed between creating the file and mounting
    const mountedNetns = newId(); // a namespace mounted, its pod never recorded
    const halfNetwork = newId(); // a network state record mid-setup, an IP, an unmounted netns file
    const podLeft = newId(); // a pod dir with its /dev/shm mounted, an IP, a pod cgroup
    const bundleLeft = newId(); // a container's bundle with its rootfs mounted, and its io dir
    const foreign = newId(); // a pod cgroup nothing here names (another berthd's, maybe)
    const childLeft = newId(); // a container cgroup below the live pod's, its record gone
    const planted: string[] = [];
    const cgroupsMade: string[] = [];
    try {
      writeFileSync(join(st, "netns", emptyNetns), "", { mode: 0o444 });
      netnsCreate(join(st, "netns", mountedNetns));
      planted.push(join(st, "netns", mountedNetns));

      // The network record exactly as RunPodSandbox writes it before its first side effect,
      // the netns file created but not mounted, and host-local's reservation made.
      const conflist = JSON.parse(readFileSync(join(env.d.dir, "net.d", "10-berth-test.conflist"), "utf8")) as {
        cniVersion: string;
        name: string;
        plugins: unknown[];
      };
      const halfPath = join(st, "netns", halfNetwork);
      writeFileSync(halfPath, "", { mode: 0o444 });
      writeFileSync(
        join(env.d.root, "network", "pods", `${halfNetwork}.json`),
        JSON.stringify({
          version: 1,
          podId: halfNetwork,
          netnsPath: halfPath,
          phase: "setting-up",
          networks: [{ list: { ...conflist, disableCheck: false, source: "" }, ifName: "eth0" }],
          loopback: {
            list: {
              cniVersion: conflist.cniVersion,
              name: "cni-loopback",
              disableCheck: false,
              plugins: [{ type: "loopback" }],
              source: "",
            },
            added: true,
          },
          runtime: {
            containerId: halfNetwork,
            netns: halfPath,
            args: [["IgnoreUnknown", "1"]],
            capabilityArgs: {},
          },
        }),
      );
      writeFileSync(join(ipamDir(), "10.234.90.201"), `${halfNetwork}\r\neth0`);

      const podDir = join(st, "pods", podLeft);
      mkdirSync(join(podDir, "shm"), { recursive: true });
      writeFileSync(join(podDir, "hostname"), "gone\n");
      mount("shm", join(podDir, "shm"), "tmpfs", 0, "size=1m");
      planted.push(join(podDir, "shm"));
      writeFileSync(join(ipamDir(), "10.234.90.202"), `${podLeft}\r\neth0`);
      for (const h of hierarchies) {
        mkdirSync(join(h, "berth", podLeft, podLeft), { recursive: true });
        cgroupsMade.push(join(h, "berth", podLeft, podLeft), join(h, "berth", podLeft));
        mkdirSync(join(h, "berth", foreign), { recursive: true });
        cgroupsMade.push(join(h, "berth", foreign));
        mkdirSync(join(h, "berth", pod.id, childLeft));
        cgroupsMade.push(join(h, "berth", pod.id, childLeft));
      }

      const bundle = join(st, "bundles", bundleLeft);
      mkdirSync(join(bundle, "rootfs"), { recursive: true });
      writeFileSync(join(bundle, "config.json"), "{}");
      mount("tmpfs", join(bundle, "rootfs"), "tmpfs", 0, "size=1m");
      planted.push(join(bundle, "rootfs"));
      writeFileSync(join(bundle, "rootfs", "data"), "the mount's own file\n");
      mkdirSync(join(st, "io", bundleLeft), { recursive: true });

      // Atomic writes a kill cut short: a network record's and the live pod's spec's.
      const netTemp = join(env.d.root, "network", "pods", `.${halfNetwork}.json.999999.a30a1da53c6c.tmp`);
      writeFileSync(netTemp, "{");
      const specTemp = join(st, "bundles", pod.id, ".config.json.999999.a30a1da53c6c.tmp");
      writeFileSync(specTemp, "{");

      await env.restart();

      // Every leftover is gone.
      for (const id of [emptyNetns, mountedNetns, halfNetwork])
        assert.ok(!existsSync(join(st, "netns", id)), `netns file ${id} removed`);
      assert.ok(!existsSync(join(env.d.root, "network", "pods", `${halfNetwork}.json`)), "network record torn down");
      assert.ok(!mountedAt(join(podDir, "shm")), "the orphan pod's /dev/shm unmounted");
      assert.ok(!existsSync(podDir), "the orphan pod dir removed");
      assert.ok(!mountedAt(join(bundle, "rootfs")), "the orphan rootfs unmounted");
      assert.ok(!existsSync(bundle) && !existsSync(join(st, "io", bundleLeft)), "the orphan bundle and io dir removed");
      assert.ok(!existsSync(netTemp) && !existsSync(specTemp), "interrupted writes' temporary files removed");
      assert.ok(existsSync(join(st, "bundles", pod.id, "config.json")), "the live pod's spec stays");
      const ips = allocations();
      assert.ok(!ips.has("10.234.90.201") && !ips.has("10.234.90.202"), `orphan IPs released (${[...ips.keys()]})`);
      for (const h of hierarchies) {
        assert.ok(!existsSync(join(h, "berth", podLeft)), `pod cgroup ${h}/berth/${podLeft} removed`);
        assert.ok(
          !existsSync(join(h, "berth", pod.id, childLeft)),
          `container cgroup below the live pod removed (${h})`,
        );
        assert.ok(existsSync(join(h, "berth", foreign)), `a cgroup nothing here names is left (${h})`);
      }
      // ... each logged at warn with what it was.
      const warned = env.d
        .logs()
        .split("\n")
        .filter((l) => l.includes("removed a leftover no pod or container record owns") && l.includes('"level":40'));
      for (const id of [emptyNetns, mountedNetns, halfNetwork, podLeft, bundleLeft, childLeft])
        assert.ok(
          warned.some((l) => l.includes(id)),
          `a warning names ${id}:\n${warned.join("\n")}`,
        );
      assert.ok(!warned.some((l) => l.includes(foreign)));

      // The pod from before the restart has all of its own and still works.
      const after = await env.d.rt.podSandboxStatus({ podSandboxId: pod.id });
      assert.equal(after.status?.state, PodSandboxState.SANDBOX_READY);
      assert.ok(await isNetnsMounted(liveNetns), "the live pod's netns is still mounted");
      assert.equal(allocations().get(liveIp), pod.id, "the live pod's IP still reserved for it");
      for (const h of hierarchies) assert.ok(existsSync(join(h, "berth", pod.id, pod.id)), `live pod's cgroup in ${h}`);
      const cs = await env.d.rt.containerStatus({ containerId: cid });
      assert.equal(cs.status?.state, ContainerState.CONTAINER_RUNNING);
      const r = await env.d.rt.execSync({
        containerId: cid,
        cmd: ["sh", "-c", "ip -4 -o addr show eth0"],
        timeout: 10n,
      });
      assert.equal(r.exitCode, 0, r.stderr.toString());
      assert.match(
        r.stdout.toString(),
        new RegExp(` ${liveIp.replaceAll(".", "\\.")}/`),
        "exec reaches the pod, its IP on eth0",
      );
    } finally {
      // Whatever a failing run left of the plants (a passing one leaves only the foreign cgroup).
      for (const p of planted) {
        try {
          umount2(p, MNT_DETACH);
        } catch {
          // already unmounted
        }
      }
      for (const c of cgroupsMade) {
        try {
          rmdirSync(c);
        } catch {
          // removed by the sweep
        }
      }
    }
  },
);

test(
  "a leftover pod cgroup that still holds a process is left whole, nothing killed, and swept once it is empty",
  { timeout: 300_000 },
  async () => {
    const hierarchies = berthHierarchies();
    const id = newId();
    const podDir = join(env.d.state, "pods", id);
    const sleeper = spawn("sleep", ["1000"], { stdio: "ignore" });
    const made: string[] = [];
    try {
      env.d.kill("SIGTERM");
      await env.d.exited;
      mkdirSync(podDir, { recursive: true });
      for (const h of hierarchies) {
        mkdirSync(join(h, "berth", id), { recursive: true });
        made.push(join(h, "berth", id));
      }
      // In one hierarchy is enough to make the pod cgroup busy.
      const memory = hierarchies.find((h) => h.endsWith("/memory")) ?? hierarchies[0]!;
      writeFileSync(join(memory, "berth", id, "cgroup.procs"), String(sleeper.pid));
      await env.restart();
      assert.equal(sleeper.exitCode, null, "the process in the leftover cgroup is not killed");
      assert.ok(existsSync(join(memory, "berth", id)), "its cgroup stays");
      assert.ok(existsSync(podDir), "and so does the pod dir that marks the cgroup as this berthd's");

      sleeper.kill("SIGKILL");
      await new Promise((r) => sleeper.once("exit", r));
      env.d.kill("SIGTERM");
      await env.d.exited;
      await env.restart();
      for (const c of made) assert.ok(!existsSync(c), `${c} removed once empty`);
      assert.ok(!existsSync(podDir), "the pod dir with it");
    } finally {
      sleeper.kill("SIGKILL");
      for (const c of made) {
        try {
          rmdirSync(c);
        } catch {
          // removed by the sweep
        }
      }
    }
  },
);
