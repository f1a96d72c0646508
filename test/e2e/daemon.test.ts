// berthd's CRI answers as kubelet and crictl see them: a real berthd process over its socket.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { status } from "@grpc/grpc-js";
import { CgroupDriver } from "../../src/gen/cri/runtime/v1/api.js";
import { parseRuntimeFeatures } from "../../src/oci/runtime-features.js";
import { until } from "../helpers/cri.js";
import { startDaemon } from "../helpers/daemon.js";

/** Where scripts/setup.sh installs runc v1.5, the embedded config's runc-1.5 handler. */
const RUNC_15 = "/usr/local/sbin/runc-1.5";

const pkg = (await import("node:fs")).readFileSync(new URL("../../../package.json", import.meta.url), "utf8");
const berthVersion = (JSON.parse(pkg) as { version: string }).version;

test("Version names berth, its version and the CRI API version", async (t) => {
  const d = await startDaemon();
  t.after(() => d.stop());
  const v = await d.rt.version({ version: "v1" });
  assert.deepEqual(v, {
    version: "0.1.0",
    runtimeName: "berth",
    runtimeVersion: berthVersion,
    runtimeApiVersion: "v1",
  });
});

test("Status: RuntimeReady, and NetworkReady follows the CNI config and plugin binaries", async (t) => {
  const d = await startDaemon({ config: `[cni]\nconf_dir = "{{dir}}/net.d"\nbin_dir = "/usr/lib/cni"\n` });
  t.after(() => d.stop());
  const confDir = join(d.dir, "net.d");
  const condition = async (type: string) => {
    const s = await d.rt.status({});
    const c = s.status?.conditions.find((x) => x.type === type);
    assert.ok(c, `no ${type} condition in ${JSON.stringify(s.status)}`);
    return c;
  };

  assert.deepEqual(await condition("RuntimeReady"), { type: "RuntimeReady", status: true, reason: "", message: "" });

  // At startup berthd wrote its default network (bridge + host-local + portmap) into the
  // empty config directory, so the node is network-ready without any setup.
  assert.ok(existsSync(join(confDir, "10-berth-default.conflist")));
  assert.deepEqual(await condition("NetworkReady"), { type: "NetworkReady", status: true, reason: "", message: "" });
  rmSync(confDir, { recursive: true });

  // No config directory at all.
  let net = await condition("NetworkReady");
  assert.equal(net.status, false);
  assert.equal(net.reason, "NetworkPluginNotReady");
  assert.match(net.message, new RegExp(confDir));

  // A config directory without configs.
  mkdirSync(confDir);
  net = await condition("NetworkReady");
  assert.equal(net.status, false);
  assert.match(net.message, /no network config/);

  // A valid conflist whose plugins (bridge, host-local IPAM, portmap) are installed.
  const conflist = {
    cniVersion: "1.0.0",
    name: "berth-test",
    plugins: [
      { type: "bridge", bridge: "berth0", ipam: { type: "host-local", subnet: "10.88.0.0/16" } },
      { type: "portmap", capabilities: { portMappings: true } },
    ],
  };
  writeFileSync(join(confDir, "10-berth.conflist"), JSON.stringify(conflist));
  net = await condition("NetworkReady");
  assert.deepEqual(net, { type: "NetworkReady", status: true, reason: "", message: "" });

  // A config sorting first that names a plugin binary that does not exist.
  writeFileSync(
    join(confDir, "05-bad.conf"),
    JSON.stringify({ cniVersion: "1.0.0", name: "bad", type: "no-such-plugin" }),
  );
  net = await condition("NetworkReady");
  assert.equal(net.status, false);
  assert.equal(net.reason, "NetworkPluginNotReady");
  assert.match(net.message, /no-such-plugin not found in \/usr\/lib\/cni/);
});

test("Status lists the runtime handlers, the default one also under the empty name", async (t) => {
  const d = await startDaemon();
  t.after(() => d.stop());
  const s = await d.rt.status({});
  assert.deepEqual(
    s.runtimeHandlers.map((h) => h.name),
    ["runc", "", "runc-1.5", "runsc"],
  );
  assert.deepEqual(s.info, {}, "info is only filled in verbose mode");
  // recursive read-only mounts: announced for a runtime whose `features` lists "rro" (runc
  // 1.1+) once berthd's start probe made one here (Linux 5.12+), never for runsc, which has
  // no such subcommand; user namespaces for runc 1.2+ (idmapped mounts), so not for Debian's
  // runc 1.1.5. The runc-1.5 handler's
  // binary is there once scripts/setup.sh installed it; without it the handler announces nothing.
  const features = (bin: string) => parseRuntimeFeatures(execFileSync(bin, ["features"], { encoding: "utf8" }));
  const runc = features("runc");
  const runc15 = existsSync(RUNC_15) ? features(RUNC_15) : { recursiveReadOnlyMounts: false, userNamespaces: false };
  assert.equal(runc.userNamespaces, false);
  assert.deepEqual(
    s.runtimeHandlers.map((h) => [h.name, h.features?.recursiveReadOnlyMounts, h.features?.userNamespaces]),
    [
      ["runc", runc.recursiveReadOnlyMounts, false],
      ["", runc.recursiveReadOnlyMounts, false],
      ["runc-1.5", runc15.recursiveReadOnlyMounts, runc15.userNamespaces],
      ["runsc", false, false],
    ],
  );
});

test("Status verbose reports the effective config as JSON", async (t) => {
  const d = await startDaemon({ config: `[cgroup]\ndriver = "systemd"\n[streaming]\ntoken_ttl = "2m"\n` });
  t.after(() => d.stop());
  const s = await d.rt.status({ verbose: true });
  const config = JSON.parse(s.info.config) as Record<string, Record<string, unknown>>;
  assert.equal(config.root as unknown, d.root);
  assert.equal(config.state as unknown, d.state);
  assert.equal(config.grpc.address, d.socket);
  assert.equal(config.cgroup.driver, "systemd");
  assert.equal(config.streaming.token_ttl, "2m");
  assert.equal(config.log.level, "debug");
});

test("RuntimeConfig reports the configured cgroup driver", async (t) => {
  const [fs, sd] = await Promise.all([startDaemon(), startDaemon({ config: `[cgroup]\ndriver = "systemd"\n` })]);
  t.after(() => Promise.all([fs.stop(), sd.stop()]));
  assert.equal((await fs.rt.runtimeConfig({})).linux?.cgroupDriver, CgroupDriver.CGROUPFS);
  assert.equal((await sd.rt.runtimeConfig({})).linux?.cgroupDriver, CgroupDriver.SYSTEMD);
});

test("UpdateRuntimeConfig takes kubelet's pod CIDRs (shown by verbose Status) and refuses a malformed one", async (t) => {
  const d = await startDaemon();
  t.after(() => d.stop());
  const podCidrs = async () => JSON.parse((await d.rt.status({ verbose: true })).info.podCIDRs ?? "null") as unknown;
  assert.deepEqual(await podCidrs(), []);
  await d.rt.updateRuntimeConfig({ runtimeConfig: { networkConfig: { podCidr: "10.244.1.0/24,fd00:10:244:1::/64" } } });
  assert.deepEqual(await podCidrs(), ["10.244.1.0/24", "fd00:10:244:1::/64"]);
  // An empty update (kubelet before the node has a CIDR) changes nothing.
  await d.rt.updateRuntimeConfig({ runtimeConfig: { networkConfig: { podCidr: "" } } });
  await d.rt.updateRuntimeConfig({});
  assert.deepEqual(await podCidrs(), ["10.244.1.0/24", "fd00:10:244:1::/64"]);
  for (const bad of ["10.244.1.0", "10.244.1.0/33", "nonsense/24", "10.0.0.0/8,fd00::/129"])
    await assert.rejects(
      d.rt.updateRuntimeConfig({ runtimeConfig: { networkConfig: { podCidr: bad } } }),
      (e: { code?: number; details?: string }) =>
        e.code === status.INVALID_ARGUMENT && /is not an IPv4 or IPv6 CIDR/.test(e.details ?? ""),
      bad,
    );
  assert.deepEqual(
    await podCidrs(),
    ["10.244.1.0/24", "fd00:10:244:1::/64"],
    "a refused update keeps the last good one",
  );
});

test("methods that have not landed answer UNIMPLEMENTED naming the method", async (t) => {
  const d = await startDaemon();
  t.after(() => d.stop());
  await assert.rejects(d.rt.checkpointContainer({}), {
    code: status.UNIMPLEMENTED,
    details: "runtime.v1.RuntimeService/CheckpointContainer is not implemented yet",
  });
  // Each call is logged at debug level with its method, code and duration. The line is written
  // once the answer is sent, so it can reach berthd's stdout a moment after the client has it.
  const logged = () =>
    d
      .logs()
      .split("\n")
      .find(
        (l) =>
          l.includes('"method":"runtime.v1.RuntimeService/CheckpointContainer"') &&
          l.includes('"code":"UNIMPLEMENTED"'),
      );
  const line = await until(logged, "the call log line for CheckpointContainer", 10_000).catch(() => undefined);
  assert.ok(line, `no call log line for CheckpointContainer in:\n${d.logs()}`);
  assert.equal(typeof (JSON.parse(line) as { durationMs?: unknown }).durationMs, "number");
});

test("the server accepts 16 MiB messages", async (t) => {
  const d = await startDaemon();
  t.after(() => d.stop());
  // gRPC's default limit is 4 MiB; a 10 MiB request must get past the transport to the handler.
  const big = "x".repeat(10 * 1024 * 1024);
  await assert.rejects(d.rt.checkpointContainer({ containerId: big }), { code: status.UNIMPLEMENTED });
});
