// CNI network configuration and namespace lifecycle, against the real plugins in
// /usr/lib/cni: loading and validating conf_dir, writing the default network, the
// NetworkReady status, and pinned network namespaces.

import { test, describe, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { mkdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import {
  CniConfigError,
  CniExec,
  loadNetworkConfigs,
  parseNetworkConfig,
  pluginStdin,
  DEFAULT_CONFIG_FILE,
  defaultNetworkConfig,
} from "../../src/network/cni.js";
import { listMasquerade, removeMasquerade } from "../../src/network/masquerade.js";
import { createNetns, isNetnsMounted, listNetns, removeNetns } from "../../src/network/netns.js";
import { NetworkManager } from "../../src/network/service.js";
import { AlreadyExistsError, FailedPreconditionError } from "../../src/util/errors.js";
import { inNetns, nsfsMountsUnder } from "../helpers/netns.js";

const CNI_BIN = "/usr/lib/cni";
const root = mkdtempSync("/tmp/berth-netconf-");

after(async () => {
  // the masquerade rules of this file's default networks (their owner is a conf_dir under root)
  await removeMasquerade((owner) => owner.startsWith(root));
  for (const ns of await listNetns(join(root, "netns"))) await removeNetns(ns.path);
  assert.deepEqual(await nsfsMountsUnder(root), [], "no namespace stays mounted");
  await rm(root, { recursive: true, force: true });
});

describe("default network config", () => {
  test("is written when conf_dir has none, valid, and used from then on", async () => {
    const confDir = join(root, "default-conf");
    const m = new NetworkManager({
      stateDir: join(root, "state1"),
      confDir,
      binDirs: [CNI_BIN],
      defaultNetwork: {
        name: "berthtest-conf",
        bridge: "berthtest9",
        subnet: "10.233.9.0/24",
        dataDir: join(root, "ipam"),
      },
    });
    assert.equal((await m.status()).ready, false, "not ready before the config exists");
    await m.init();

    const file = join(confDir, DEFAULT_CONFIG_FILE);
    const conf = JSON.parse(await readFile(file, "utf8"));
    // Every plugin installed here supports 1.0.0 (checked with the VERSION command).
    assert.equal(conf.cniVersion, "1.0.0");
    assert.equal(conf.name, "berthtest-conf");
    assert.deepEqual(
      conf.plugins.map((p: { type: string }) => p.type),
      ["bridge", "portmap"],
    );
    const [bridge, portmap] = conf.plugins;
    assert.equal(bridge.bridge, "berthtest9");
    assert.equal(bridge.isGateway, true);
    assert.equal(bridge.ipMasq, false, "no per-pod masquerade chains: berthd's one rule does it");
    assert.equal(bridge.hairpinMode, true);
    assert.equal(bridge.ipam.type, "host-local");
    assert.deepEqual(bridge.ipam.ranges, [[{ subnet: "10.233.9.0/24" }]]);
    assert.deepEqual(bridge.ipam.routes, [{ dst: "0.0.0.0/0" }]);
    assert.deepEqual(portmap.capabilities, { portMappings: true });

    const [list] = await loadNetworkConfigs(confDir);
    assert.equal(list.source, file);
    assert.deepEqual(await m.status(), { ready: true, reason: "", message: "" });

    // One masquerade rule for the subnet, tagged with the conf_dir it serves; a second init
    // (a restart) finds it and adds no other.
    const mine = async () => (await listMasquerade()).filter((r) => r.owner === confDir);
    assert.deepEqual(await mine(), [{ subnet: "10.233.9.0/24", owner: confDir }]);
    await m.init();
    assert.deepEqual(await mine(), [{ subnet: "10.233.9.0/24", owner: confDir }]);

    // A second start keeps the existing file (an administrator may have edited it).
    const before = await stat(file);
    await new NetworkManager({ stateDir: join(root, "state1"), confDir, binDirs: [CNI_BIN] }).init();
    assert.equal((await stat(file)).mtimeMs, before.mtimeMs);

    // Uninstall removes it (and only it).
    assert.deepEqual(await m.uninstall(), [{ subnet: "10.233.9.0/24", owner: confDir }]);
    assert.deepEqual(await mine(), []);
    assert.deepEqual(await m.uninstall(), [], "twice is fine");
  });

  test("an older berth's default list (per-pod ipMasq) is rewritten; an edited one is left alone", async () => {
    const opts = { name: "berthtest-old", bridge: "berthtest7", subnet: "10.233.7.0/24", dataDir: join(root, "ipam") };
    const oldDir = join(root, "old-conf");
    const editedDir = join(root, "edited-conf");
    await mkdir(oldDir);
    await mkdir(editedDir);
    const old = defaultNetworkConfig("1.0.0", opts, true);
    await writeFile(join(oldDir, DEFAULT_CONFIG_FILE), JSON.stringify(old, null, 2));
    const edited = structuredClone(old) as { plugins: Record<string, unknown>[] };
    edited.plugins[0].hairpinMode = false;
    await writeFile(join(editedDir, DEFAULT_CONFIG_FILE), JSON.stringify(edited));
    const mOld = new NetworkManager({
      stateDir: join(root, "state3"),
      confDir: oldDir,
      binDirs: [CNI_BIN],
      defaultNetwork: opts,
    });
    const mEdited = new NetworkManager({
      stateDir: join(root, "state4"),
      confDir: editedDir,
      binDirs: [CNI_BIN],
      defaultNetwork: opts,
    });
    try {
      await mOld.init();
      await mEdited.init();
      const [rewritten] = await loadNetworkConfigs(oldDir);
      assert.equal(rewritten.plugins[0].ipMasq, false);
      assert.deepEqual(rewritten.plugins, defaultNetworkConfig("1.0.0", opts).plugins);
      assert.deepEqual(JSON.parse(await readFile(join(editedDir, DEFAULT_CONFIG_FILE), "utf8")), edited);
      const rules = await listMasquerade();
      assert.deepEqual(
        rules.filter((r) => r.owner === oldDir),
        [{ subnet: "10.233.7.0/24", owner: oldDir }],
      );
      assert.deepEqual(
        rules.filter((r) => r.owner === editedDir),
        [],
        "an administrator's list gets no rule",
      );
    } finally {
      await mOld.uninstall();
    }
  });

  test("is not written over an existing config, which wins by file name order", async () => {
    const confDir = join(root, "existing-conf");
    await mkdir(confDir);
    const mine = { cniVersion: "0.4.0", name: "berthtest-mine", type: "bridge", bridge: "berthtest8" };
    await writeFile(join(confDir, "50-mine.conf"), JSON.stringify(mine));
    await writeFile(
      join(confDir, "90-other.conflist"),
      JSON.stringify({ cniVersion: "1.0.0", name: "other", plugins: [{ type: "ptp" }] }),
    );
    const m = new NetworkManager({ stateDir: join(root, "state2"), confDir, binDirs: [CNI_BIN] });
    await m.init();
    const lists = await m.networks();
    assert.equal(lists.length, 1);
    assert.equal(lists[0].name, "berthtest-mine");
    // A single-plugin .conf is wrapped as a one-plugin list.
    assert.equal(lists[0].cniVersion, "0.4.0");
    assert.deepEqual(lists[0].plugins, [{ type: "bridge", bridge: "berthtest8" }]);
    await assert.rejects(stat(join(confDir, DEFAULT_CONFIG_FILE)), { code: "ENOENT" });
    assert.deepEqual(
      (await listMasquerade()).filter((r) => r.owner === confDir),
      [],
      "no masquerade rule for an administrator's network",
    );
  });
});

describe("config validation", () => {
  const bad: [string, string, RegExp][] = [
    ["invalid JSON", "{ not json", /invalid JSON/],
    ["no name", JSON.stringify({ cniVersion: "1.0.0", plugins: [{ type: "bridge" }] }), /missing "name"/],
    [
      "bad name",
      JSON.stringify({ cniVersion: "1.0.0", name: "-x y", plugins: [{ type: "bridge" }] }),
      /must start with a letter or digit/,
    ],
    ["no version", JSON.stringify({ name: "n", plugins: [{ type: "bridge" }] }), /missing "cniVersion"/],
    [
      "old version",
      JSON.stringify({ cniVersion: "0.2.0", name: "n", plugins: [{ type: "bridge" }] }),
      /0\.2\.0 is not supported/,
    ],
    ["plugins missing", JSON.stringify({ cniVersion: "1.0.0", name: "n" }), /"plugins" must be an array/],
    ["plugins empty", JSON.stringify({ cniVersion: "1.0.0", name: "n", plugins: [] }), /"plugins" is empty/],
    [
      "plugin without type",
      JSON.stringify({ cniVersion: "1.0.0", name: "n", plugins: [{ bridge: "x" }] }),
      /plugins\[0\] has no "type"/,
    ],
    [
      "type with a slash",
      JSON.stringify({ cniVersion: "1.0.0", name: "n", plugins: [{ type: "../bin/sh" }] }),
      /invalid type/,
    ],
  ];
  for (const [what, text, message] of bad) {
    test(`rejects a conflist with ${what}, naming the file`, () => {
      assert.throws(
        () => parseNetworkConfig(text, "/etc/cni/net.d/10-x.conflist"),
        (err: unknown) => {
          assert.ok(err instanceof CniConfigError);
          assert.ok(err instanceof FailedPreconditionError, "maps to FAILED_PRECONDITION");
          assert.match(err.message, /10-x\.conflist/);
          assert.match(err.message, message);
          return true;
        },
      );
    });
  }

  test("a broken config file makes status not ready and setup fail with the reason", async () => {
    const confDir = join(root, "broken-conf");
    await mkdir(confDir);
    await writeFile(join(confDir, "10-broken.conflist"), JSON.stringify({ cniVersion: "1.0.0", name: "broken" }));
    const m = new NetworkManager({ stateDir: join(root, "state3"), confDir, binDirs: [CNI_BIN] });
    const st = await m.status();
    assert.equal(st.ready, false);
    assert.equal(st.reason, "NetworkPluginNotReady");
    assert.match(st.message, /10-broken\.conflist.*"plugins" must be an array/);
    await assert.rejects(
      m.setupPod({ podId: "berthtest-broken", name: "p", namespace: "ns", uid: "u" }),
      CniConfigError,
    );
    assert.deepEqual(await m.listPinnedNetns(), [], "nothing was created");
  });

  test("status names the plugins that are not installed", async () => {
    const confDir = join(root, "missing-plugin-conf");
    await mkdir(confDir);
    await writeFile(
      join(confDir, "10-x.conflist"),
      JSON.stringify({
        cniVersion: "1.0.0",
        name: "x",
        plugins: [{ type: "bridge", ipam: { type: "berthtest-ipam" } }, { type: "berthtest-nope" }],
      }),
    );
    const m = new NetworkManager({ stateDir: join(root, "state4"), confDir, binDirs: [CNI_BIN] });
    const st = await m.status();
    assert.equal(st.ready, false);
    assert.match(st.message, /berthtest-ipam, berthtest-nope not found in \/usr\/lib\/cni/);
  });

  test("status without any config (and no default allowed) says where it looked", async () => {
    const m = new NetworkManager({
      stateDir: join(root, "state5"),
      confDir: join(root, "empty-conf"),
      binDirs: [CNI_BIN],
      defaultNetwork: false,
    });
    const st = await m.status();
    assert.equal(st.ready, false);
    assert.match(st.message, /no network config found in .*empty-conf/);
    await assert.rejects(m.init(), /no CNI network config found/);
  });
});

describe("plugin invocation", () => {
  test("the runtime config carries only the capabilities a plugin asks for", () => {
    const list = parseNetworkConfig(
      JSON.stringify({
        cniVersion: "1.0.0",
        name: "n",
        plugins: [{ type: "bridge" }, { type: "portmap", capabilities: { portMappings: true, bandwidth: false } }],
      }),
      "x.conflist",
    );
    const rt = {
      containerId: "c",
      netns: "/n",
      ifName: "eth0",
      args: [] as [string, string][],
      capabilityArgs: {
        portMappings: [{ hostPort: 8080, containerPort: 80, protocol: "tcp" as const }],
        bandwidth: { ingressRate: 1 },
      },
    };
    const first = JSON.parse(pluginStdin(list, list.plugins[0], rt));
    assert.deepEqual(first, { type: "bridge", name: "n", cniVersion: "1.0.0" });
    const prev = { cniVersion: "1.0.0", ips: [{ address: "10.0.0.2/24" }] };
    const second = JSON.parse(pluginStdin(list, list.plugins[1], rt, prev));
    assert.deepEqual(second.runtimeConfig, { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: "tcp" }] });
    assert.deepEqual(second.prevResult, prev);
    assert.equal(second.name, "n");
  });

  test("VERSION reports what the installed plugins support", async () => {
    const exec = new CniExec({ binDirs: [CNI_BIN] });
    assert.ok((await exec.versions("bridge")).includes("1.0.0"));
    // firewall never supported 0.3.x: the common version of the set must be at least 0.4.0.
    assert.equal(await exec.commonVersion(["bridge", "firewall"], ["1.0.0", "0.4.0"]), "1.0.0");
    await assert.rejects(exec.commonVersion(["bridge", "firewall"], ["0.3.1"]), FailedPreconditionError);
  });
});

describe("network namespaces", () => {
  const dir = join(root, "netns");

  test("create pins a fresh namespace, remove unpins it, twice is fine", async () => {
    const path = await createNetns(dir, "berthtest-ns1");
    assert.equal(path, join(dir, "berthtest-ns1"));
    assert.equal(await isNetnsMounted(path), true);
    // A new namespace has only a loopback device, and it is down (NetworkManager brings it up).
    const links = await inNetns(path, "ip", ["-o", "link"]);
    assert.equal(links.code, 0, links.stderr);
    assert.deepEqual(
      links.stdout
        .trim()
        .split("\n")
        .map((l) => l.split(":")[1].trim()),
      ["lo"],
    );
    assert.deepEqual(await listNetns(dir), [{ name: "berthtest-ns1", path, mounted: true }]);
    await assert.rejects(createNetns(dir, "berthtest-ns1"), AlreadyExistsError);

    await removeNetns(path);
    assert.equal(await isNetnsMounted(path), false);
    await assert.rejects(stat(path), { code: "ENOENT" });
    await removeNetns(path);
    assert.deepEqual(await listNetns(dir), []);
  });

  test("a leftover unmounted file is listed as such and removable", async () => {
    await mkdir(dir, { recursive: true });
    const path = join(dir, "berthtest-stale");
    await writeFile(path, "");
    assert.deepEqual(await listNetns(dir), [{ name: "berthtest-stale", path, mounted: false }]);
    await removeNetns(path);
    assert.deepEqual(await listNetns(dir), []);
  });

  test("namespace names cannot escape the directory", async () => {
    await assert.rejects(createNetns(dir, "../evil"), /invalid network namespace name/);
    await assert.rejects(createNetns(dir, ""), /invalid network namespace name/);
  });

  test("listing a directory that does not exist is empty", async () => {
    assert.deepEqual(await listNetns(join(root, "nope")), []);
  });
});
