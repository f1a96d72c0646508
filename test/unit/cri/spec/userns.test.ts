// Unit tests of a pod's user namespace (kubelet's hostUsers: false) in the OCI specs: the
// checks of the CRI options (containerd's), the sandbox joining the pinned namespace, the
// containers joining the sandbox's with idmapped pod files and volumes, and the host's /sys
// bound read-only for a pod on the host's network. What a runtime's `features` says is
// test/unit/oci/runtime-features.test.ts; the end-to-end run with runc 1.5 is
// test/e2e/cri-userns.test.ts.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { join } from "node:path";
import { NamespaceMode, PodSandboxConfig, type UserNamespace } from "../../../../src/gen/cri/runtime/v1/api.js";
import { buildSandboxSpec } from "../../../../src/cri/spec/index.js";
import { podUserns, sameUserns } from "../../../../src/cri/userns/options.js";
import { InternalError } from "../../../../src/util/errors.js";
import { build, dir, expectInvalid, host, outside, podPaths } from "./fixture.js";

const range = (containerId: number, hostId: number, length: number) => ({ containerId, hostId, length });
const POD: UserNamespace = { mode: NamespaceMode.POD, uids: [range(0, 65536, 65536)], gids: [range(0, 131072, 65536)] };
const OCI_UIDS = [{ containerID: 0, hostID: 65536, size: 65536 }];
const OCI_GIDS = [{ containerID: 0, hostID: 131072, size: 65536 }];
const podWith = (usernsOptions: UserNamespace | undefined) => ({
  linux: { securityContext: { namespaceOptions: { usernsOptions } } },
});

describe("user namespace options", () => {
  test("none, or mode NODE without mappings, is the node's user namespace", () => {
    assert.equal(podUserns(undefined), null);
    assert.equal(podUserns({ mode: NamespaceMode.NODE, uids: [], gids: [] }), null);
  });

  test("mode POD with one UID and one GID range starting at 0 gives the OCI mappings", () => {
    assert.deepEqual(podUserns(POD), { uidMappings: OCI_UIDS, gidMappings: OCI_GIDS });
  });

  test("what containerd refuses is INVALID_ARGUMENT, naming the problem", () => {
    const pod = (uids: UserNamespace["uids"], gids = uids) => ({ mode: NamespaceMode.POD, uids, gids });
    expectInvalid(() => podUserns(pod([range(0, 1000, 100000), range(0, 2000, 100000)])), /exactly one mapping.*got 2/);
    expectInvalid(() => podUserns(pod([range(1, 1000, 100000)])), /must start at container id 0/);
    expectInvalid(() => podUserns(pod([range(0, 1000, 0)])), /length 0 is not positive/);
    expectInvalid(() => podUserns(pod([range(0, 2 ** 32 - 10, 100)])), /goes past the largest id/);
    expectInvalid(() => podUserns(pod([])), /needs a UID and a GID mapping/);
    expectInvalid(() => podUserns(pod([range(0, 1000, 10)], [])), /needs a UID and a GID mapping/);
    expectInvalid(
      () => podUserns({ mode: NamespaceMode.CONTAINER, uids: [], gids: [] }),
      /mode CONTAINER is not supported/,
    );
    expectInvalid(() => podUserns({ mode: NamespaceMode.TARGET, uids: [], gids: [] }), /mode TARGET is not supported/);
    expectInvalid(() => podUserns({ ...POD, mode: NamespaceMode.NODE }), /mode NODE takes no mappings/);
  });

  test("a container's options must be its pod's", () => {
    assert.equal(sameUserns(POD, structuredClone(POD)), true);
    assert.equal(sameUserns(undefined, undefined), true);
    assert.equal(sameUserns(undefined, { mode: NamespaceMode.NODE, uids: [], gids: [] }), true);
    assert.equal(sameUserns(POD, undefined), false);
    assert.equal(sameUserns(POD, { ...POD, gids: [range(0, 65536, 65536)] }), false);
  });
});

describe("sandbox spec with a user namespace", () => {
  const sandbox = (usernsOptions: UserNamespace | undefined, usernsPath?: string) =>
    buildSandboxSpec({
      id: "s1",
      config: PodSandboxConfig.fromPartial({
        metadata: { name: "pod", namespace: "ns", uid: "u" },
        ...podWith(usernsOptions),
      }),
      rootfsPath: "/sandbox-root",
      netnsPath: "/run/berth/netns/s1",
      files: {
        resolvConf: join(dir, "resolv.conf"),
        hosts: join(dir, "hosts"),
        hostname: join(dir, "hostname"),
        shm: join(dir, "shm"),
      },
      host,
      usernsPath,
    });

  test("the pause process joins the pinned user namespace first, with its mappings repeated for the runtime", () => {
    const s = sandbox(POD, "/run/berth/pods/s1/userns");
    assert.deepEqual(s.linux.namespaces[0], { type: "user", path: "/run/berth/pods/s1/userns" });
    assert.deepEqual(
      s.linux.namespaces.map((n) => n.type),
      ["user", "mount", "pid", "ipc", "network", "uts"],
    );
    assert.deepEqual(s.linux.uidMappings, OCI_UIDS);
    assert.deepEqual(s.linux.gidMappings, OCI_GIDS);
  });

  test("without a user namespace, none is in the spec", () => {
    const s = sandbox(undefined);
    assert.ok(!s.linux.namespaces.some((n) => n.type === "user"));
    assert.equal(s.linux.uidMappings, undefined);
  });

  test("on the host's network: no network or UTS namespace, and /sys is the host's bound recursively read-only", () => {
    const s = buildSandboxSpec({
      id: "s1",
      config: PodSandboxConfig.fromPartial({
        metadata: { name: "pod", namespace: "ns", uid: "u" },
        linux: { securityContext: { namespaceOptions: { network: NamespaceMode.NODE, usernsOptions: POD } } },
      }),
      rootfsPath: "/sandbox-root",
      netnsPath: null,
      files: {
        resolvConf: join(dir, "resolv.conf"),
        hosts: join(dir, "hosts"),
        hostname: join(dir, "hostname"),
        shm: join(dir, "shm"),
      },
      host,
      usernsPath: "/run/berth/pods/s1/userns",
    });
    assert.deepEqual(
      s.linux.namespaces.map((n) => n.type),
      ["user", "mount", "pid", "ipc"],
    );
    assert.deepEqual(
      s.mounts.filter((m) => m.destination === "/sys"),
      [{ destination: "/sys", type: "bind", source: "/sys", options: ["rbind", "rro", "nosuid", "nodev", "noexec"] }],
    );
  });

  test("sysfs stays for a pod with its own network, with or without a user namespace", () => {
    for (const s of [sandbox(POD, "/run/berth/pods/s1/userns"), sandbox(undefined)]) {
      assert.deepEqual(
        s.mounts.filter((m) => m.destination === "/sys").map((m) => m.type),
        ["sysfs"],
      );
    }
  });

  test("a pinned namespace is required, and bad options are refused", () => {
    assert.throws(() => sandbox(POD), InternalError);
    expectInvalid(() => sandbox({ mode: NamespaceMode.CONTAINER, uids: [], gids: [] }, "/x"), /not supported/);
  });
});

describe("container spec with a user namespace", () => {
  const usernsPath = "/proc/42/ns/user";
  const ctr = (extra: object = {}) => ({
    linux: { securityContext: { namespaceOptions: { usernsOptions: POD } } },
    ...extra,
  });

  test("the container joins the sandbox's user namespace first; pod files are idmapped, /dev/shm is not", () => {
    const s = build(ctr(), { pod: podWith(POD), extra: { podPaths: { ...podPaths(), usernsPath } } });
    assert.deepEqual(s.linux.namespaces[0], { type: "user", path: usernsPath });
    assert.equal(s.linux.namespaces.filter((n) => n.type === "user").length, 1);
    assert.deepEqual(s.linux.uidMappings, OCI_UIDS);
    assert.deepEqual(s.linux.gidMappings, OCI_GIDS);
    for (const dest of ["/etc/hosts", "/etc/hostname", "/etc/resolv.conf"]) {
      const m = s.mounts.find((x) => x.destination === dest)!;
      assert.deepEqual([m.uidMappings, m.gidMappings], [OCI_UIDS, OCI_GIDS], dest);
    }
    const shm = s.mounts.find((x) => x.destination === "/dev/shm")!;
    assert.equal(shm.uidMappings, undefined);
  });

  test("a volume with kubelet's mappings becomes an idmapped bind mount", () => {
    const mounts = [
      { containerPath: "/data", hostPath: outside, uidMappings: POD.uids, gidMappings: POD.gids },
      { containerPath: "/plain", hostPath: outside },
    ];
    const s = build(ctr({ mounts }), { pod: podWith(POD), extra: { podPaths: { ...podPaths(), usernsPath } } });
    const data = s.mounts.find((x) => x.destination === "/data")!;
    assert.deepEqual([data.type, data.uidMappings, data.gidMappings], ["bind", OCI_UIDS, OCI_GIDS]);
    assert.equal(s.mounts.find((x) => x.destination === "/plain")!.uidMappings, undefined);
    expectInvalid(
      () =>
        build(ctr({ mounts: [{ containerPath: "/d", hostPath: outside, uidMappings: POD.uids }] }), {
          pod: podWith(POD),
          extra: { podPaths: { ...podPaths(), usernsPath } },
        }),
      /needs both UID and GID mappings/,
    );
  });

  test("on the host's network the container's /sys is the host's, bound recursively read-only; the cgroup mount stays", () => {
    const hostNetPod = {
      linux: { securityContext: { namespaceOptions: { network: NamespaceMode.NODE, usernsOptions: POD } } },
    };
    const ctrHostNet = {
      linux: { securityContext: { namespaceOptions: { network: NamespaceMode.NODE, usernsOptions: POD } } },
    };
    const s = build(ctrHostNet, { pod: hostNetPod, extra: { podPaths: { ...podPaths(), usernsPath } } });
    assert.deepEqual(
      s.mounts.filter((m) => m.destination === "/sys"),
      [{ destination: "/sys", type: "bind", source: "/sys", options: ["rbind", "rro", "nosuid", "nodev", "noexec"] }],
    );
    assert.equal(s.mounts.filter((m) => m.destination === "/sys/fs/cgroup").length, 1);
    assert.ok(!s.linux.namespaces.some((n) => n.type === "network"));
    // the same pod without the host's network keeps sysfs
    const own = build(ctr(), { pod: podWith(POD), extra: { podPaths: { ...podPaths(), usernsPath } } });
    assert.equal(own.mounts.find((m) => m.destination === "/sys")!.type, "sysfs");
  });

  test("a container whose options differ from its pod's is refused", () => {
    expectInvalid(
      () => build({}, { pod: podWith(POD), extra: { podPaths: { ...podPaths(), usernsPath } } }),
      /differ from its pod's/,
    );
    expectInvalid(() => build(ctr(), { pod: {} }), /differ from its pod's/);
  });

  test("no user namespace: nothing changes", () => {
    const s = build({});
    assert.ok(!s.linux.namespaces.some((n) => n.type === "user"));
    assert.ok(s.mounts.every((m) => m.uidMappings === undefined));
  });
});
