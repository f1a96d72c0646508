// The outbound NAT of berth's default network: one masquerade rule for the pod subnet,
// installed at start instead of the bridge plugin's per-pod ipMasq chains.
//
// An "outside" host: a network namespace of its own, joined to the host by a veth pair on
// 10.233.21.0/24, with no route back to the pod subnet. A pod on the default network
// (bridge berthtestm0, 10.233.20.0/24) reaches a server there only if its traffic leaves
// with the host's address, and the server reports the address it sees. berthd itself is
// started twice on one conf_dir (one rule, not two) and `berthd uninstall` removes the rule.
// Everything made here (netns, veth, bridge, rules, temp dir) is removed at the end.

import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { DEFAULT_CONFIG_FILE, DEFAULT_SUBNET } from "../../src/network/cni.js";
import { listMasquerade, removeMasquerade } from "../../src/network/masquerade.js";
import { createNetns, removeNetns } from "../../src/network/netns.js";
import { NetworkManager } from "../../src/network/service.js";
import { runBerthd, startDaemon } from "../helpers/daemon.js";
import { deleteLink, httpGet, inNetns, iptablesRulesMatching, linkExists, run } from "../helpers/netns.js";

const CNI_BIN = "/usr/lib/cni";
const NET = "berthtest-masq";
const BRIDGE = "berthtestm0";
const SUBNET = "10.233.20.0/24";
const VETH_HOST = "berthtmo0";
const VETH_OUTSIDE = "berthtmo1";
const HOST_ADDR = "10.233.21.1";
const OUTSIDE_ADDR = "10.233.21.2";
const PORT = 8080;

const TMP_PREFIX = "/tmp/berth-netmasq-";
const root = mkdtempSync(TMP_PREFIX);
const confDir = join(root, "conf");
const outsideNs = join(root, "ns", "outside");

function manager(): NetworkManager {
  return new NetworkManager({
    stateDir: join(root, "state"),
    netnsDir: join(root, "ns"),
    confDir,
    binDirs: [CNI_BIN],
    defaultNetwork: { name: NET, bridge: BRIDGE, subnet: SUBNET, dataDir: join(root, "ipam") },
  });
}

async function must(cmd: string, args: string[], nsPath?: string): Promise<void> {
  const r = nsPath ? await inNetns(nsPath, cmd, args) : await run(cmd, args);
  assert.equal(r.code, 0, `${cmd} ${args.join(" ")}: ${r.stderr}`);
}

/** An HTTP server in the outside namespace that answers with the client address it sees. */
async function startPeerEcho(): Promise<ChildProcess> {
  const script =
    `require("http").createServer((q, s) => s.end(q.socket.remoteAddress))` +
    `.listen(${PORT}, "${OUTSIDE_ADDR}", () => console.log("listening"))`;
  const child = spawn("nsenter", [`--net=${outsideNs}`, process.execPath, "-e", script], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  await new Promise<void>((resolve, reject) => {
    let err = "";
    child.stderr!.on("data", (b: Buffer) => (err += b.toString()));
    child.stdout!.on("data", (b: Buffer) => b.toString().includes("listening") && resolve());
    child.on("exit", (code) => reject(new Error(`echo server exited with ${code}: ${err}`)));
  });
  return child;
}

let server: ChildProcess | undefined;

async function cleanupHost(): Promise<void> {
  await deleteLink(VETH_HOST); // takes its peer with it
  await deleteLink(BRIDGE);
  // rules of this file's conf_dirs (now, or left by a crashed run)
  await removeMasquerade((owner) => owner.startsWith(TMP_PREFIX));
}

before(async () => {
  await cleanupHost();
  await createNetns(join(root, "ns"), "outside");
  await must("ip", ["link", "add", VETH_HOST, "type", "veth", "peer", "name", VETH_OUTSIDE, "netns", outsideNs]);
  await must("ip", ["addr", "add", `${HOST_ADDR}/24`, "dev", VETH_HOST]);
  await must("ip", ["link", "set", VETH_HOST, "up"]);
  await must("ip", ["addr", "add", `${OUTSIDE_ADDR}/24`, "dev", VETH_OUTSIDE], outsideNs);
  await must("ip", ["link", "set", VETH_OUTSIDE, "up"], outsideNs);
  await must("ip", ["link", "set", "lo", "up"], outsideNs);
  // Deliberately no route to the pod subnet in there: only a masqueraded connection can be answered.
  const routes = await inNetns(outsideNs, "ip", ["-4", "route"]);
  assert.ok(!routes.stdout.includes("10.233.20."), routes.stdout);
  server = await startPeerEcho();
});

after(async () => {
  try {
    await manager().recover(new Set());
    if (server && server.exitCode === null && server.signalCode === null) {
      const exited = new Promise((r) => server!.once("exit", r));
      server.kill("SIGKILL");
      await exited;
    }
    await removeNetns(outsideNs);
  } finally {
    await cleanupHost();
    await rm(root, { recursive: true, force: true });
  }
  assert.equal(await linkExists(VETH_HOST), false);
  assert.deepEqual(await iptablesRulesMatching(SUBNET.replace(/\/24$/, "")), [], "no rule of the pod subnet left");
  assert.deepEqual(
    (await listMasquerade()).filter((r) => r.owner.startsWith(TMP_PREFIX)),
    [],
    "no masquerade rule of this file's daemons left",
  );
});

describe("the default network's masquerade rule", () => {
  test("a pod reaches a host outside the subnet, which sees the host's address, not the pod's", async () => {
    const m = manager();
    await m.init();
    const conf = JSON.parse(await readFile(join(confDir, DEFAULT_CONFIG_FILE), "utf8"));
    assert.equal(conf.plugins[0].ipMasq, false);
    assert.deepEqual(
      (await listMasquerade()).filter((r) => r.owner === confDir),
      [{ subnet: SUBNET, owner: confDir }],
    );

    const podId = `berthtest-masq-${randomBytes(4).toString("hex")}`;
    const pod = await m.setupPod({ podId, name: "masq", namespace: "default", uid: "u-masq" });
    try {
      const podIp = pod.ips[0].address;
      assert.ok(podIp.startsWith("10.233.20."), podIp);
      assert.deepEqual(await iptablesRulesMatching(podId), [], "no per-pod nat chain");
      assert.equal(await httpGet(OUTSIDE_ADDR, PORT, pod.netnsPath), HOST_ADDR, "masqueraded to the host's address");
      // The pod subnet itself is not masqueraded: the bridge gateway (the host) sees the pod's own address.
      const hostEcho = spawn(
        process.execPath,
        [
          "-e",
          `const s = require("http").createServer((q, r) => r.end(q.socket.remoteAddress)).listen(0, "10.233.20.1", () => console.log(s.address().port))`,
        ],
        { stdio: ["ignore", "pipe", "inherit"] },
      );
      try {
        const port = await new Promise<number>((resolve) =>
          hostEcho.stdout!.once("data", (b: Buffer) => resolve(Number(b))),
        );
        assert.equal(await httpGet("10.233.20.1", port, pod.netnsPath), podIp, "pod-subnet traffic keeps its address");
      } finally {
        hostEcho.kill("SIGKILL");
      }

      // Without the rule the outside host cannot answer (it has no route back to the pod).
      await m.uninstall();
      await assert.rejects(httpGet(OUTSIDE_ADDR, PORT, pod.netnsPath));
      await m.init(); // a restart puts it back
      assert.equal(await httpGet(OUTSIDE_ADDR, PORT, pod.netnsPath), HOST_ADDR);
    } finally {
      await m.teardownPod(podId);
      await m.uninstall();
    }
  });

  test("berthd installs one rule however often it starts, and `berthd uninstall` removes it", async () => {
    const d1 = await startDaemon({ keepDir: true });
    const dir = d1.dir;
    const ours = async () => (await listMasquerade()).filter((r) => r.owner === join(dir, "net.d"));
    try {
      assert.deepEqual(await ours(), [{ subnet: DEFAULT_SUBNET, owner: join(dir, "net.d") }]);
      await d1.stop();
      // berthd's stop leaves it: the pods (and their shims) outlive berthd and still need it.
      assert.equal((await ours()).length, 1);
      const d2 = await startDaemon({ dir, keepDir: true });
      try {
        assert.equal((await ours()).length, 1, "a restart adds no second rule");
        const flags = ["--config", d2.configPath, "--root", d2.root, "--state", d2.state];
        const refused = await runBerthd(["uninstall", ...flags]);
        assert.equal(refused.code, 1, refused.stderr);
        assert.match(refused.stderr, /is running .*stop it first/);
        assert.equal((await ours()).length, 1, "nothing removed while berthd runs");
      } finally {
        await d2.stop();
      }
      const flags = ["--config", d1.configPath, "--root", d1.root, "--state", d1.state];
      const r = await runBerthd(["uninstall", ...flags]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(
        r.stdout,
        new RegExp(`removed the masquerade rule of pod subnet ${DEFAULT_SUBNET.replace(/\./g, "\\.")}`),
      );
      assert.deepEqual(await ours(), []);
      const again = await runBerthd(["uninstall", ...flags]);
      assert.equal(again.code, 0, again.stderr);
      assert.match(again.stdout, /nothing to remove/);
    } finally {
      await removeMasquerade((owner) => owner.startsWith(dir + "/"));
      await rm(dir, { recursive: true, force: true });
    }
  });
});
