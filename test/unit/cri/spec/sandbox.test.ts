// Unit tests of OCI spec generation (src/cri/spec, src/oci) for the pod sandbox: the containerd CRI
// semantics a pod relies on, checked on the generated spec. The runc end-to-end checks are in
// oci-runc.test.ts.

import assert from "node:assert/strict";
import { test, describe } from "node:test";
import { join } from "node:path";
import {
  NamespaceMode,
  PodSandboxConfig,
  SecurityProfile_ProfileType,
} from "../../../../src/gen/cri/runtime/v1/api.js";
import { buildSandboxSpec } from "../../../../src/cri/spec/index.js";
import { host, dir, expectInvalid, type PodPartial } from "./fixture.js";

describe("sandbox spec", () => {
  const files = () => ({
    resolvConf: join(dir, "resolv.conf"),
    hosts: join(dir, "hosts"),
    hostname: join(dir, "hostname"),
    shm: join(dir, "shm"),
  });
  const sandbox = (pod: PodPartial, netnsPath: string | null = "/var/run/netns/p", hostFacts = host) =>
    buildSandboxSpec({
      id: "s1",
      config: PodSandboxConfig.fromPartial({
        metadata: { name: "pod", namespace: "ns", uid: "u" },
        hostname: "pod-host",
        logDirectory: "/logs",
        ...pod,
      }),
      rootfsPath: "/sandbox-root",
      netnsPath,
      files: files(),
      host: hostFacts,
    });
  test("pause process: no privileges, read-only root, pod namespaces, hostname, sysctls", () => {
    const s = sandbox({
      linux: { cgroupParent: "/kubepods/p", sysctls: { "net.ipv4.ip_forward": "1", "kernel.shmmax": "1000" } },
    });
    assert.deepEqual(s.process.args, ["/pause"]);
    assert.deepEqual(s.process.user, { uid: 65535, gid: 65535 });
    assert.deepEqual(s.process.capabilities, {
      bounding: [],
      effective: [],
      inheritable: [],
      permitted: [],
      ambient: [],
    });
    assert.equal(s.process.noNewPrivileges, true);
    assert.equal(s.process.oomScoreAdj, 0); // -998 clamped to the daemon's 0
    assert.deepEqual(s.root, { path: "/sandbox-root", readonly: true });
    assert.equal(s.hostname, "pod-host");
    assert.deepEqual(s.linux.sysctl, { "net.ipv4.ip_forward": "1", "kernel.shmmax": "1000" });
    assert.equal(s.linux.cgroupsPath, "/kubepods/p/s1");
    // unset: unconfined, as containerd's sandbox (the filter is the dearest part of runc create)
    assert.equal(s.linux.seccomp, undefined);
    assert.deepEqual(s.linux.namespaces, [
      { type: "mount" },
      { type: "pid" },
      { type: "ipc" },
      { type: "network", path: "/var/run/netns/p" },
      { type: "uts" },
    ]);
    assert.equal(s.annotations!["io.kubernetes.cri.container-type"], "sandbox");
    assert.equal(s.annotations!["io.kubernetes.cri.sandbox-log-directory"], "/logs");
    const shm = s.mounts.find((m) => m.destination === "/dev/shm")!;
    assert.deepEqual(shm, {
      destination: "/dev/shm",
      type: "bind",
      source: join(dir, "shm"),
      options: ["rbind", "rprivate", "ro", "nosuid", "nodev", "noexec"],
    });
    for (const f of ["/etc/resolv.conf", "/etc/hosts", "/etc/hostname"])
      assert.ok(
        s.mounts.some((m) => m.destination === f),
        f,
      );
  });
  test("host network, pid and ipc: no namespaces, no hostname, host /dev/shm", () => {
    const s = sandbox(
      {
        linux: {
          securityContext: {
            namespaceOptions: { network: NamespaceMode.NODE, pid: NamespaceMode.NODE, ipc: NamespaceMode.NODE },
          },
        },
      },
      null,
    );
    assert.deepEqual(s.linux.namespaces, [{ type: "mount" }]);
    assert.equal(s.hostname, undefined);
    assert.equal(s.mounts.find((m) => m.destination === "/dev/shm")!.source, "/dev/shm");
  });
  test("sysctls that would change the host are refused", () => {
    expectInvalid(
      () =>
        sandbox(
          {
            linux: {
              sysctls: { "net.core.somaxconn": "1" },
              securityContext: { namespaceOptions: { network: NamespaceMode.NODE } },
            },
          },
          null,
        ),
      /host's/,
    );
    expectInvalid(() => sandbox({ linux: { sysctls: { "vm.swappiness": "1" } } }), /not namespaced/);
  });
  test("a pod asking for RuntimeDefault gets the default filter for the native ABI only", () => {
    const s = sandbox({
      linux: { securityContext: { seccomp: { profileType: SecurityProfile_ProfileType.RuntimeDefault } } },
    });
    assert.equal(s.linux.seccomp!.defaultAction, "SCMP_ACT_ERRNO");
    if (process.arch === "x64") {
      // pause is native: the default filter without its i386 and x32 sections (cheaper for runc)
      assert.deepEqual(s.linux.seccomp!.architectures, ["SCMP_ARCH_X86_64"]);
    }
  });
  test("pod RunAsUser, unconfined seccomp, oom above the daemon's", () => {
    const s = sandbox(
      {
        linux: {
          securityContext: {
            runAsUser: { value: 1000n },
            supplementalGroups: [3n],
            seccomp: { profileType: SecurityProfile_ProfileType.Unconfined },
          },
        },
      },
      "/n",
      { ...host, oomScoreAdj: -999 },
    );
    assert.deepEqual(s.process.user, { uid: 1000, gid: 0, additionalGids: [3] });
    assert.equal(s.linux.seccomp, undefined);
    assert.equal(s.process.oomScoreAdj, -998);
  });
});
