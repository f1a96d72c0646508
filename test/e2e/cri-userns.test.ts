// Pods with a user namespace (kubelet's hostUsers: false) through the CRI with real runc: the
// runc-1.5 handler (runc v1.5 built by scripts/go-tools.sh, as scripts/setup.sh installs it)
// runs them; Debian's runc 1.1.5 (the default handler) makes no idmapped mounts and refuses
// them. The container's root is uid 0 inside and the mapped host uid outside, writes to its
// rootfs (idmapped image layers under a writable layer it owns) and to a volume kubelet sends
// with the pod's mappings (an idmapped bind mount), and nothing is left after removal. A pod
// with a user namespace may use the host's network (kubelet's UserNamespacesHostNetworkSupport):
// it sees the host's interfaces, and /sys is the host's bound read-only, since the kernel lets
// only a user namespace owning the network namespace mount sysfs.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { status } from "@grpc/grpc-js";
import { NamespaceMode } from "../../src/gen/cri/runtime/v1/api.js";
import type { CriEnv } from "../helpers/cri.js";
import { useCriEnv } from "../helpers/cri-fixture.js";
import { goTool } from "../helpers/go-tools.js";

const RUNC_15 = goTool("runc-1.5", "runc");
const HANDLER = "runc-1.5";
/** The host range the pod's ids 0..65535 map to (kubelet hands out multiples of 65536). */
const HOST_ID = 65536 * 7;
const MAPPING = [{ containerId: 0, hostId: HOST_ID, length: 65536 }];
const USERNS = { mode: NamespaceMode.POD, uids: MAPPING, gids: MAPPING };
const usernsPod = { linux: { securityContext: { namespaceOptions: { usernsOptions: USERNS } } } };
/** A veth pair the host-network test adds to the host (and removes). */
const DUMMY = "berthunsd0";
const usernsCtr = { securityContext: { namespaceOptions: { usernsOptions: USERNS } } };

let env: CriEnv;
useCriEnv(
  {
    bridge: "berthuns0",
    subnet: "10.234.84.0/24",
    config: `
[runtime.handlers."${HANDLER}"]
binary_name = "${RUNC_15}"
root = "{{dir}}/runc-1.5"
`,
  },
  (e) => (env = e),
);

async function exec(cid: string, cmd: string[]): Promise<string> {
  const r = await env.d.rt.execSync({ containerId: cid, cmd, timeout: 20n }, { deadlineMs: 60_000 });
  assert.equal(r.exitCode, 0, `${cmd.join(" ")}: ${r.stderr.toString()}`);
  return r.stdout.toString().trim();
}

async function expectCode(p: Promise<unknown>, code: status, re: RegExp): Promise<void> {
  await assert.rejects(p, (err: { code?: number; details?: string }) => {
    assert.equal(err.code, code, `got ${status[err.code ?? 0]}: ${err.details}`);
    assert.match(err.details ?? "", re);
    return true;
  });
}

/** The mounts of the host's mount table whose source or target names `id`. */
function mountsOf(id: string): string[] {
  return readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .filter((l) => l.includes(id));
}

describe("pods with a user namespace", () => {
  test("Status announces user namespaces for the runc 1.5 handler only", async () => {
    const s = await env.d.rt.status({});
    const userns = Object.fromEntries(s.runtimeHandlers.map((h) => [h.name, h.features?.userNamespaces]));
    assert.deepEqual(userns, { runc: false, "": false, "runc-v2": false, runsc: false, [HANDLER]: true });
    const rro = s.runtimeHandlers.find((h) => h.name === HANDLER)!.features?.recursiveReadOnlyMounts;
    assert.equal(rro, true, "runc 1.5 on Linux 6.x makes recursive read-only mounts");
    // runc 1.5 has user namespaces and rro, and berthd's start probe bound the host's /sys
    // read-only in a user namespace: pods with a user namespace may use the host's network
    assert.equal(s.features?.userNamespacesHostNetwork, true);
  });

  test("the default handler (Debian's runc 1.1.5) refuses a user namespace with FAILED_PRECONDITION and leaves nothing", async () => {
    const before = (await env.d.rt.listPodSandbox({})).items.length;
    await expectCode(
      env.d.rt.runPodSandbox({ config: env.podConfig("userns-default", usernsPod), runtimeHandler: "" }),
      status.FAILED_PRECONDITION,
      /runtime handler "runc" cannot run pods with a user namespace.*handlers that can: runc-1\.5/,
    );
    assert.equal((await env.d.rt.listPodSandbox({})).items.length, before);
    assert.deepEqual(env.leftovers(), []);
  });

  test("an idmapped volume on the default handler is FAILED_PRECONDITION and no container is made", async (t) => {
    const vol = mkdtempSync(join(tmpdir(), "berth-userns-vol-"));
    t.after(() => rmSync(vol, { recursive: true, force: true }));
    const pod = await env.runPod("idmap-default");
    try {
      const config = env.containerConfig("app", ["sleep", "3600"], {
        mounts: [{ containerPath: "/data", hostPath: vol, uidMappings: MAPPING, gidMappings: MAPPING }],
      });
      await expectCode(
        env.d.rt.createContainer({ podSandboxId: pod.id, config, sandboxConfig: pod.config }),
        status.FAILED_PRECONDITION,
        /idmapped mount, which runtime handler "runc" cannot make/,
      );
      assert.deepEqual((await env.d.rt.listContainers({ filter: { podSandboxId: pod.id } })).containers, []);
    } finally {
      await env.d.rt.stopPodSandbox({ podSandboxId: pod.id });
      await env.d.rt.removePodSandbox({ podSandboxId: pod.id });
    }
  });

  test("bad mappings are INVALID_ARGUMENT, the host network on the default handler FAILED_PRECONDITION; nothing is left", async () => {
    const two = [...MAPPING, { containerId: 0, hostId: HOST_ID * 2, length: 65536 }];
    const run = (extra: object) =>
      env.d.rt.runPodSandbox({ config: env.podConfig("userns-bad", extra), runtimeHandler: HANDLER });
    const ns = (o: object) => ({ linux: { securityContext: { namespaceOptions: o } } });
    await expectCode(
      run(ns({ usernsOptions: { mode: NamespaceMode.POD, uids: two, gids: two } })),
      status.INVALID_ARGUMENT,
      /exactly one mapping/,
    );
    await expectCode(
      run(ns({ usernsOptions: { mode: NamespaceMode.CONTAINER } })),
      status.INVALID_ARGUMENT,
      /mode CONTAINER is not supported/,
    );
    await expectCode(
      env.d.rt.runPodSandbox({
        config: env.podConfig("userns-bad", ns({ network: NamespaceMode.NODE, usernsOptions: USERNS })),
        runtimeHandler: "",
      }),
      status.FAILED_PRECONDITION,
      /runtime handler "runc" cannot run pods with a user namespace/,
    );
    assert.equal((await env.d.rt.listPodSandbox({})).items.length, 0);
    assert.deepEqual(env.leftovers(), []);
  });

  test("root inside is the mapped host uid outside; the rootfs and an idmapped volume are writable; a berthd restart keeps the namespace; removal leaves nothing", async (t) => {
    const vol = mkdtempSync(join(tmpdir(), "berth-userns-vol-"));
    t.after(() => rmSync(vol, { recursive: true, force: true }));
    writeFileSync(join(vol, "from-host"), "host\n");
    const pod = await env.runPod("userns", usernsPod, HANDLER);
    const cid = await env.runContainer(pod, "app", ["sleep", "3600"], {
      linux: usernsCtr,
      // as kubelet sends every mount of a pod with a user namespace: with the pod's mappings
      mounts: [
        { containerPath: "/data", hostPath: vol, uidMappings: MAPPING, gidMappings: MAPPING },
        // an image volume kubelet sends with the mappings too: mounted as it is, read-only
        {
          containerPath: "/iv",
          image: { image: env.images.busybox },
          readonly: true,
          uidMappings: MAPPING,
          gidMappings: MAPPING,
        },
      ],
    });
    assert.equal(await exec(cid, ["sh", "-c", "test -x /iv/bin/busybox && echo readable"]), "readable");

    // inside: root, in a namespace mapping 0 to HOST_ID
    assert.equal(await exec(cid, ["id", "-u"]), "0");
    assert.match(await exec(cid, ["cat", "/proc/self/uid_map"]), new RegExp(`^0\\s+${HOST_ID}\\s+65536$`));
    // outside: the container's process runs as the host uid its root maps to
    const info = JSON.parse((await env.d.rt.containerStatus({ containerId: cid, verbose: true })).info.info) as {
      pid: number;
    };
    const uidLine = readFileSync(`/proc/${info.pid}/status`, "utf8").match(/^Uid:\s+(.*)$/m)![1]!;
    assert.deepEqual(uidLine.split(/\s+/).map(Number), [HOST_ID, HOST_ID, HOST_ID, HOST_ID]);

    // the rootfs: the image's files are root's inside, and root can write there; on the host
    // the new file belongs to the mapped uid
    assert.equal(await exec(cid, ["stat", "-c", "%u:%g", "/", "/bin/busybox"]), "0:0\n0:0");
    assert.equal(await exec(cid, ["sh", "-c", "echo hi > /new-file && stat -c %u /new-file"]), "0");
    const onHost = statSync(`/proc/${info.pid}/root/new-file`);
    assert.deepEqual([onHost.uid, onHost.gid], [HOST_ID, HOST_ID]);
    // the pod's files are idmapped too: root owns /etc/hosts
    assert.equal(await exec(cid, ["stat", "-c", "%u", "/etc/hosts"]), "0");

    // the volume: the host's root-owned directory is root's inside, writable; what the
    // container writes is stored with its ids inside (0), as the host's root owns the rest
    assert.equal(await exec(cid, ["stat", "-c", "%u", "/data", "/data/from-host"]), "0\n0");
    await exec(cid, ["sh", "-c", "echo container > /data/from-container"]);
    const written = statSync(join(vol, "from-container"));
    assert.deepEqual([written.uid, written.gid], [0, 0]);
    assert.equal(readFileSync(join(vol, "from-container"), "utf8"), "container\n");

    // berthd killed and restarted: the pinned namespace outlives it, and a new container of
    // the pod joins the same user namespace
    env.d.kill("SIGKILL");
    await env.restart();
    const second = await env.runContainer(pod, "second", ["sleep", "3600"], { linux: usernsCtr });
    assert.equal(await exec(second, ["id", "-u"]), "0");
    assert.match(await exec(second, ["cat", "/proc/self/uid_map"]), new RegExp(`^0\\s+${HOST_ID}\\s+65536$`));
    assert.equal(await exec(cid, ["cat", "/new-file"]), "hi");

    // stop and remove: no pinned namespace, no mount of the pod or container, no netns
    await env.d.rt.stopPodSandbox({ podSandboxId: pod.id }, { deadlineMs: 120_000 });
    await env.d.rt.removePodSandbox({ podSandboxId: pod.id }, { deadlineMs: 120_000 });
    assert.deepEqual(mountsOf(pod.id), []);
    assert.deepEqual(mountsOf(cid), []);
    assert.deepEqual(mountsOf(second), []);
    assert.deepEqual(env.leftovers(), []);
  });

  test("on the host's network: the host's interfaces, root mapped to the host range, the host's /sys read-only; removal leaves nothing", async () => {
    const hostNs = { network: NamespaceMode.NODE, usernsOptions: USERNS };
    const pod = await env.runPod(
      "userns-hostnet",
      { linux: { securityContext: { namespaceOptions: hostNs } } },
      HANDLER,
    );
    const cid = await env.runContainer(pod, "app", ["sleep", "3600"], {
      linux: { securityContext: { namespaceOptions: hostNs } },
    });
    try {
      // the host's network: the same network namespace, and an interface this test adds to
      // the host shows in the container's /sys (which is usable) and /proc/net/dev
      assert.equal(await exec(cid, ["readlink", "/proc/self/ns/net"]), readlinkSync("/proc/self/ns/net"));
      execFileSync("ip", ["link", "add", DUMMY, "type", "veth", "peer", "name", `${DUMMY}p`]);
      const ifindex = readFileSync(`/sys/class/net/${DUMMY}/ifindex`, "utf8").trim();
      assert.equal(await exec(cid, ["cat", `/sys/class/net/${DUMMY}/ifindex`]), ifindex);
      assert.match(await exec(cid, ["cat", "/proc/net/dev"]), new RegExp(`^\\s*${DUMMY}:`, "m"));
      assert.equal(await exec(cid, ["hostname"]), hostname());

      // root inside maps to the pod's host range, and the process runs as that uid outside
      assert.equal(await exec(cid, ["id", "-u"]), "0");
      assert.match(await exec(cid, ["cat", "/proc/self/uid_map"]), new RegExp(`^0\\s+${HOST_ID}\\s+65536$`));
      const info = JSON.parse((await env.d.rt.containerStatus({ containerId: cid, verbose: true })).info.info) as {
        pid: number;
      };
      const uidLine = readFileSync(`/proc/${info.pid}/status`, "utf8").match(/^Uid:\s+(.*)$/m)![1]!;
      assert.deepEqual(uidLine.split(/\s+/).map(Number), [HOST_ID, HOST_ID, HOST_ID, HOST_ID]);

      // /sys is the host's sysfs bound read-only, down to its submounts: every mount the host
      // has under /sys (its cgroup mounts), which a plain "ro" bind would leave writable, is
      // there read-only (runc's own cgroup mounts over them aside: other devices)
      const under = (text: string) =>
        text
          .split("\n")
          .map((l) => l.split(" "))
          .filter((f) => /^\/sys(\/|$)/.test(f[4] ?? ""));
      const inside = under(await exec(cid, ["cat", "/proc/self/mountinfo"]));
      assert.match(inside[0]!.join(" "), /^\S+ \S+ \S+ \/ \/sys ro,.* - sysfs /, "the host's sysfs, bound read-only");
      const hostSubs = under(readFileSync("/proc/self/mountinfo", "utf8")).filter((f) => f[4] !== "/sys");
      assert.ok(hostSubs.length > 0, "the host has mounts under /sys");
      for (const h of hostSubs) {
        const copy = inside.find((f) => f[4] === h[4] && f[2] === h[2]);
        assert.ok(copy, `the host's ${h[4]} (${h[2]}) is under the container's /sys`);
        assert.match(copy[5]!, /^ro(,|$)/, copy.join(" "));
      }
      const write = await env.d.rt.execSync(
        { containerId: cid, cmd: ["sh", "-c", "echo 1 > /sys/kernel/uevent_helper"], timeout: 20n },
        { deadlineMs: 60_000 },
      );
      assert.notEqual(write.exitCode, 0);
      assert.match(write.stderr.toString(), /Read-only file system/);
      // the rootfs is the container's own, writable by its root
      assert.equal(await exec(cid, ["sh", "-c", "echo hi > /new-file && cat /new-file"]), "hi");
    } finally {
      try {
        execFileSync("ip", ["link", "del", DUMMY], { stdio: "ignore" });
      } catch {
        // never added
      }
      await env.d.rt.stopPodSandbox({ podSandboxId: pod.id }, { deadlineMs: 120_000 });
      await env.d.rt.removePodSandbox({ podSandboxId: pod.id }, { deadlineMs: 120_000 });
    }
    assert.deepEqual(mountsOf(pod.id), []);
    assert.deepEqual(mountsOf(cid), []);
    assert.deepEqual(env.leftovers(), []);
  });
});
