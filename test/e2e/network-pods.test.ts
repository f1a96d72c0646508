// Pod networking end to end with the real CNI plugins (bridge, host-local, portmap,
// loopback) in real network namespaces. Everything uses test-only names, so nothing
// touches a real node config: bridge berthtest0, subnet 10.233.0.0/24, network
// "berthtest", and a conf_dir, host-local dataDir and state dir under a temp dir.
// The suite removes what it created and then checks that no namespace, veth, bridge
// or iptables rule of it is left.

import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { chmod, mkdir, readFile, readdir, rm, stat, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { CniPluginError, CniPluginTimeoutError, type CniResult } from "../../src/network/cni.js";
import { createNetns, isNetnsMounted } from "../../src/network/netns.js";
import { NetworkManager, type PodNetwork } from "../../src/network/service.js";
import { FailedPreconditionError, InternalError, DeadlineExceededError } from "../../src/util/errors.js";
import {
  bridgePorts,
  deleteLink,
  freePort,
  httpGet,
  inNetns,
  iptablesChains,
  iptablesRulesMatching,
  linkExists,
  nsfsMountsUnder,
  ping,
  purgeNatRules,
  removeUnusedHostportChains,
  run,
  startHttpServerInNetns,
} from "../helpers/netns.js";

const CNI_BIN = "/usr/lib/cni";
const NET = "berthtest";
const BRIDGE = "berthtest0";
const SUBNET_PREFIX = "10.233.0.";
const GATEWAY = "10.233.0.1";
const FAIL_NET = "berthtest-fail";
const FAIL_BRIDGE = "berthtest1";

const root = mkdtempSync("/tmp/berth-netpods-");
const confDir = join(root, "conf");
const dataDir = join(root, "ipam");
const stateDir = join(root, "state");
const fakeBin = join(root, "bin");
let chainsBefore = new Set<string>();

function podId(tag: string): string {
  return `berthtest-${tag}-${randomBytes(4).toString("hex")}`;
}

function manager(overrides: Partial<ConstructorParameters<typeof NetworkManager>[0]> = {}): NetworkManager {
  return new NetworkManager({
    stateDir,
    confDir,
    binDirs: [CNI_BIN],
    defaultNetwork: { name: NET, bridge: BRIDGE, subnet: `${SUBNET_PREFIX}0/24`, dataDir },
    ...overrides,
  });
}

/** The host end of the pod's veth, from the bridge plugin's result. */
function hostVeth(result: CniResult | null, bridge = BRIDGE): string {
  const iface = result?.interfaces?.find((i) => !i.sandbox && i.name !== bridge);
  assert.ok(iface, `no host veth in ${JSON.stringify(result)}`);
  return iface.name;
}

async function allocations(network: string, dir = dataDir): Promise<string[]> {
  try {
    return (await readdir(join(dir, network))).filter((n) => /^\d+\.\d+\.\d+\.\d+$/.test(n));
  } catch {
    return [];
  }
}

/** Asserts that a pod's network left nothing on the host. */
async function assertGone(
  id: string,
  net: PodNetwork | undefined,
  nsPath: string,
  network = NET,
  dir = dataDir,
): Promise<void> {
  assert.equal(await isNetnsMounted(nsPath), false, "netns unmounted");
  await assert.rejects(stat(nsPath), { code: "ENOENT" }, "netns file removed");
  if (net) {
    for (const ip of net.ips)
      assert.ok(!(await allocations(network, dir)).includes(ip.address), `IP ${ip.address} released`);
    assert.equal(await linkExists(hostVeth(net.result)), false, "host veth removed");
  }
  assert.deepEqual(await iptablesRulesMatching(id), [], "no iptables rules for the pod");
  await assert.rejects(stat(join(stateDir, "pods", `${id}.json`)), { code: "ENOENT" }, "state record removed");
}

async function cleanupHost(): Promise<void> {
  await purgeNatRules("berthtest");
  await deleteLink(BRIDGE);
  await deleteLink(FAIL_BRIDGE);
}

before(async () => {
  await cleanupHost(); // whatever a crashed earlier run left
  chainsBefore = await iptablesChains("nat");
  await mkdir(fakeBin, { recursive: true });
  // A plugin that refuses ADD with a plugin-specific error code and logs every call.
  await writeFile(
    join(fakeBin, "berthtest-fail"),
    `#!/bin/sh
cat >/dev/null
echo "$CNI_COMMAND $CNI_CONTAINERID" >> "${join(root, "fail-calls.log")}"
case "$CNI_COMMAND" in
  ADD) printf '{"cniVersion":"1.0.0","code":142,"msg":"berthtest-fail refuses","details":"on purpose"}'; exit 1 ;;
  VERSION) printf '{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}' ;;
esac
exit 0
`,
  );
  // A plugin whose ADD hangs.
  await writeFile(
    join(fakeBin, "berthtest-hang"),
    `#!/bin/sh
cat >/dev/null
if [ "$CNI_COMMAND" = ADD ]; then exec sleep 3599; fi
exit 0
`,
  );
  await chmod(join(fakeBin, "berthtest-fail"), 0o755);
  await chmod(join(fakeBin, "berthtest-hang"), 0o755);
});

after(async () => {
  const m = manager();
  await m.recover(new Set()); // tears down anything a failed test left
  try {
    await m.uninstall(); // the default network's masquerade rule
    assert.deepEqual(await iptablesRulesMatching(`${SUBNET_PREFIX}0/24`), [], "no nat rule of the test subnet");
    assert.deepEqual(await m.listPinnedNetns(), [], "no pinned netns left");
    assert.deepEqual(await nsfsMountsUnder(root), [], "no netns mounted under the test dir");
    assert.deepEqual(await bridgePorts(BRIDGE), [], "no veth left on the test bridge");
    assert.deepEqual(await bridgePorts(FAIL_BRIDGE), [], "no veth left on the second test bridge");
    assert.deepEqual(await allocations(NET), [], "no host-local allocation left");
    assert.deepEqual(
      await allocations(FAIL_NET, join(root, "ipam-fail")),
      [],
      "no allocation left in the failing network",
    );
    assert.deepEqual(await iptablesRulesMatching("berthtest"), [], "no nat rules of the test networks");
    assert.deepEqual(await iptablesRulesMatching("10.233.", "filter"), [], "no filter rules of the test subnets");
  } finally {
    await cleanupHost();
    await removeUnusedHostportChains(chainsBefore);
    await rm(root, { recursive: true, force: true });
  }
  assert.equal(await linkExists(BRIDGE), false);
});

describe("pod network setup and teardown", () => {
  const m = manager();
  const idA = podId("a");
  const idB = podId("b");
  let a: PodNetwork;
  let b: PodNetwork;
  let hostPort = 0;

  test("two pods set up at once get their own namespace and different IPs on the subnet", async () => {
    await m.init();
    hostPort = await freePort();
    const hostPortB = await freePort();
    [a, b] = await Promise.all([
      m.setupPod({
        podId: idA,
        name: "a",
        namespace: "default",
        uid: "uid-a",
        portMappings: [{ hostPort, containerPort: 80, protocol: "tcp" }],
      }),
      m.setupPod({
        podId: idB,
        name: "b",
        namespace: "default",
        uid: "uid-b",
        portMappings: [{ hostPort: hostPortB, containerPort: 80, protocol: "tcp" }],
      }),
    ]);
    for (const [id, p] of [
      [idA, a],
      [idB, b],
    ] as const) {
      assert.equal(p.netnsPath, join(stateDir, "netns", id));
      assert.equal(await isNetnsMounted(p.netnsPath), true);
      assert.equal(p.ips.length, 1);
      assert.equal(p.ips[0].family, 4);
      assert.ok(p.ips[0].address.startsWith(SUBNET_PREFIX), p.ips[0].address);
      assert.equal(p.ips[0].prefixLength, 24);
      assert.equal(p.ips[0].gateway, GATEWAY);
      assert.ok((await allocations(NET)).includes(p.ips[0].address), "host-local recorded the allocation");
      assert.ok((await bridgePorts(BRIDGE)).includes(hostVeth(p.result)), "veth is on the bridge");
    }
    assert.notEqual(a.ips[0].address, b.ips[0].address);
    assert.deepEqual((await m.listPinnedNetns()).map((n) => n.name).sort(), [idA, idB].sort());
  });

  test("pods reach each other, the host reaches them, and lo is up inside", async () => {
    assert.ok(await ping(b.ips[0].address, a.netnsPath), "a -> b");
    assert.ok(await ping(a.ips[0].address, b.netnsPath), "b -> a");
    assert.ok(await ping(a.ips[0].address), "host -> a");
    assert.ok(await ping(GATEWAY, a.netnsPath), "a -> gateway");
    assert.ok(await ping("127.0.0.1", a.netnsPath), "lo inside a");
  });

  test("lo comes up with no loopback plugin installed: berth brings it up itself", async () => {
    const noLoopback = join(root, "bin-no-loopback");
    await mkdir(noLoopback, { recursive: true });
    for (const p of ["bridge", "host-local", "portmap"]) await symlink(join(CNI_BIN, p), join(noLoopback, p));
    const m2 = manager({ binDirs: [noLoopback] });
    assert.deepEqual(await m2.status(), { ready: true, reason: "", message: "" });
    const id = podId("nolo");
    const p = await m2.setupPod({ podId: id, name: "nolo", namespace: "default", uid: "uid-nolo" });
    try {
      assert.ok(await ping("127.0.0.1", p.netnsPath), "lo is up");
      const lo = await inNetns(p.netnsPath, "ip", ["-o", "-4", "addr", "show", "dev", "lo"]);
      assert.match(lo.stdout, /inet 127\.0\.0\.1\/8/);
    } finally {
      await m2.teardownPod(id);
    }
    await assertGone(id, p, p.netnsPath);
  });

  test("a hostPort mapping reaches a TCP server inside the pod", async () => {
    const server = await startHttpServerInNetns(a.netnsPath, 80, "hello from pod a");
    try {
      // Locally generated traffic to a host address is DNATed by portmap's OUTPUT hook:
      // the bridge gateway, and 127.0.0.1 too (portmap turns on route_localnet for it).
      assert.equal(await httpGet(GATEWAY, hostPort), "hello from pod a");
      assert.equal(await httpGet("127.0.0.1", hostPort), "hello from pod a");
      // From another pod through the host port, and straight to the pod IP.
      assert.equal(await httpGet(GATEWAY, hostPort, b.netnsPath), "hello from pod a");
      assert.equal(await httpGet(a.ips[0].address, 80, b.netnsPath), "hello from pod a");
      // Hairpin: the pod reaches itself through its own host port.
      assert.equal(await httpGet(GATEWAY, hostPort, a.netnsPath), "hello from pod a");
    } finally {
      await server.stop();
    }
  });

  test("the network record survives a restart (a new manager reads it back)", async () => {
    const restarted = manager();
    const again = await restarted.podNetwork(idA);
    assert.deepEqual(again?.ips, a.ips);
    assert.equal(again?.netnsPath, a.netnsPath);
    assert.deepEqual(again?.result, a.result);
    assert.deepEqual(
      (await restarted.listPodStates()).map((s) => s.phase),
      ["ready", "ready"],
    );
  });

  test("setting up a pod that is already set up is refused and changes nothing", async () => {
    await assert.rejects(
      m.setupPod({ podId: idA, name: "a", namespace: "default", uid: "uid-a" }),
      /already has its network/,
    );
    assert.equal(await isNetnsMounted(a.netnsPath), true);
  });

  test("teardown releases the IP, the veth, the port mapping and the netns; twice is fine", async () => {
    const vethA = hostVeth(a.result);
    assert.notDeepEqual(await iptablesRulesMatching(idA), [], "the pod had nat rules");
    await m.teardownPod(idA);
    await assertGone(idA, a, a.netnsPath);
    assert.equal(await linkExists(vethA), false);
    await assert.rejects(httpGet(GATEWAY, hostPort), "host port no longer forwarded");
    await m.teardownPod(idA);
    // Teardown after a restart, from the record alone.
    await manager().teardownPod(idB);
    await assertGone(idB, b, b.netnsPath);
    await manager().teardownPod(idB);
    assert.deepEqual(await m.listPinnedNetns(), []);
    assert.ok(await linkExists(BRIDGE), "the bridge is shared and stays");
  });

  test("an IP freed by teardown can be handed out again; CHECK passes, then sees a lost route", async () => {
    const id = podId("c");
    const c = await m.setupPod({ podId: id, name: "c", namespace: "default", uid: "uid-c" });
    assert.ok(c.ips[0].address.startsWith(SUBNET_PREFIX));
    assert.deepEqual(await allocations(NET), [c.ips[0].address]);
    // (No port mappings here: portmap 1.1.1's CHECK wrongly demands ip6tables rules for an
    // IPv4-only mapping, containernetworking/plugins#819.)
    await m.checkPod(id);
    const del = await inNetns(c.netnsPath, "ip", ["route", "del", "default"]);
    assert.equal(del.code, 0, del.stderr);
    await assert.rejects(m.checkPod(id), (err: unknown) => err instanceof CniPluginError && err.command === "CHECK");
    await m.teardownPod(id);
    await assertGone(id, c, c.netnsPath);
  });

  test("host network pods get no namespace and no CNI", async () => {
    const id = podId("host");
    const h = await m.setupPod({ podId: id, name: "h", namespace: "default", uid: "u", hostNetwork: true });
    assert.deepEqual(h, { netnsPath: "", ips: [], result: null, attachments: [] });
    await m.teardownPod(id);
    assert.deepEqual(await m.listPinnedNetns(), []);
  });
});

describe("failures leave nothing behind", () => {
  async function failingManager(tag: string, secondPlugin: string, timeoutMs?: number): Promise<NetworkManager> {
    const dir = join(root, `conf-${tag}`);
    await mkdir(dir, { recursive: true });
    await writeFile(
      join(dir, "10-fail.conflist"),
      JSON.stringify({
        cniVersion: "1.0.0",
        name: FAIL_NET,
        plugins: [
          {
            type: "bridge",
            bridge: FAIL_BRIDGE,
            isGateway: true,
            ipMasq: true,
            ipam: { type: "host-local", ranges: [[{ subnet: "10.233.1.0/24" }]], dataDir: join(root, "ipam-fail") },
          },
          { type: secondPlugin },
        ],
      }),
    );
    return manager({ confDir: dir, binDirs: [fakeBin, CNI_BIN], pluginTimeoutMs: timeoutMs, defaultNetwork: false });
  }

  test("a plugin that errors fails setup with its CNI error, after DEL undid the bridge's work", async () => {
    const m = await failingManager("err", "berthtest-fail");
    const id = podId("fail");
    await assert.rejects(m.setupPod({ podId: id, name: "f", namespace: "default", uid: "u" }), (err: unknown) => {
      assert.ok(err instanceof CniPluginError, String(err));
      assert.ok(err instanceof InternalError);
      assert.equal(err.plugin, "berthtest-fail");
      assert.equal(err.command, "ADD");
      assert.equal(err.cniCode, 142);
      assert.equal(err.cniMsg, "berthtest-fail refuses");
      assert.match(
        err.message,
        /CNI plugin berthtest-fail ADD failed for network "berthtest-fail" \(code 142\): berthtest-fail refuses: on purpose/,
      );
      return true;
    });
    // The bridge plugin did allocate and plug a veth before the failure; all of it is undone.
    const calls = (await readFile(join(root, "fail-calls.log"), "utf8")).trim().split("\n");
    assert.deepEqual(calls, [`ADD ${id}`, `DEL ${id}`], "the failed plugin also got its DEL, in reverse order first");
    await assertGone(id, undefined, join(stateDir, "netns", id), FAIL_NET, join(root, "ipam-fail"));
    assert.deepEqual(await allocations(FAIL_NET, join(root, "ipam-fail")), []);
    assert.deepEqual(await bridgePorts(FAIL_BRIDGE), []);
  });

  test("a plugin that hangs is killed at the time limit and setup is undone", async () => {
    const m = await failingManager("hang", "berthtest-hang", 1500);
    const id = podId("hang");
    await assert.rejects(m.setupPod({ podId: id, name: "h", namespace: "default", uid: "u" }), (err: unknown) => {
      assert.ok(err instanceof CniPluginTimeoutError, String(err));
      assert.ok(err instanceof DeadlineExceededError);
      assert.match(err.message, /berthtest-hang ADD did not finish within 1500 ms/);
      return true;
    });
    await assertGone(id, undefined, join(stateDir, "netns", id), FAIL_NET, join(root, "ipam-fail"));
    assert.deepEqual(await bridgePorts(FAIL_BRIDGE), []);
    const left = await run("pgrep", ["-f", "sleep 3599"]);
    assert.equal(left.stdout.trim(), "", "the hung plugin's process group was killed");
  });

  test("a plugin type that is not installed fails before anything is created", async () => {
    const m = await failingManager("missing", "berthtest-no-such-plugin");
    const id = podId("missing");
    await assert.rejects(m.setupPod({ podId: id, name: "m", namespace: "default", uid: "u" }), (err: unknown) => {
      assert.ok(err instanceof FailedPreconditionError, String(err));
      assert.match(err.message, /berthtest-no-such-plugin not found in .*bin:\/usr\/lib\/cni/);
      return true;
    });
    await assertGone(id, undefined, join(stateDir, "netns", id), FAIL_NET, join(root, "ipam-fail"));
    assert.equal((await m.status()).ready, false);
  });
});

describe("restart recovery", () => {
  test("recover tears down pods that are no longer known and pinned namespaces without a record", async () => {
    const m = manager();
    const keep = podId("keep");
    const lost = podId("lost");
    const kept = await m.setupPod({ podId: keep, name: "k", namespace: "default", uid: "u1" });
    const gone = await m.setupPod({ podId: lost, name: "l", namespace: "default", uid: "u2" });
    const orphan = await createNetns(join(stateDir, "netns"), podId("orphan"));

    const { cleaned, failed } = await manager().recover(new Set([keep]));
    assert.deepEqual(failed, []);
    assert.equal(cleaned.length, 2);
    await assertGone(lost, gone, gone.netnsPath);
    assert.equal(await isNetnsMounted(orphan), false);
    assert.equal(await isNetnsMounted(kept.netnsPath), true, "the kept pod is untouched");
    assert.ok(await ping(kept.ips[0].address));

    await m.teardownPod(keep);
    await assertGone(keep, kept, kept.netnsPath);
  });
});
