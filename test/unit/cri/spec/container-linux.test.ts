// Unit tests of OCI spec generation (src/cri/spec, src/oci) for the container's Linux settings: seccomp, resources, mounts, devices, namespaces: the containerd CRI
// semantics a pod relies on, checked on the generated spec. The runc end-to-end checks are in
// oci-runc.test.ts.

import assert from "node:assert/strict";
import { test, describe } from "node:test";
import { symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  MountPropagation,
  NamespaceMode,
  SecurityProfile_ProfileType,
} from "../../../../src/gen/cri/runtime/v1/api.js";
import { FailedPreconditionError, InvalidArgumentError, InternalError } from "../../../../src/util/errors.js";
import { cgroupsPath, type Spec } from "../../../../src/oci/index.js";
import { clampOomScoreAdj } from "../../../../src/cri/spec/resources.js";
import { podCgroupOwned, podCgroupParent } from "../../../../src/oci/cgroups-path.js";
import { splitDev } from "../../../../src/cri/spec/devices.js";
import { dir, podPaths, build, expectInvalid } from "./fixture.js";

describe("seccomp", () => {
  const sec = (securityContext: object) => build({ linux: { securityContext } }).linux.seccomp;
  test("unset: unconfined, as containerd", () => {
    assert.equal(sec({}), undefined);
  });
  test("RuntimeDefault: EPERM default, clone namespace filter, clone3 ENOSYS, no unshare", () => {
    const s = sec({ seccomp: { profileType: SecurityProfile_ProfileType.RuntimeDefault } })!;
    assert.equal(s.defaultAction, "SCMP_ACT_ERRNO");
    assert.equal(s.defaultErrnoRet, 1);
    if (process.arch === "x64") {
      // an app container may run i386 or x32 binaries: the default profile covers every ABI
      assert.deepEqual(s.architectures, ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]);
    }
    const allowed = new Set(
      s.syscalls!.filter((x) => x.action === "SCMP_ACT_ALLOW" && !x.args).flatMap((x) => x.names),
    );
    for (const n of ["read", "write", "execve", "openat", "chown", "setuid", "ptrace"]) assert.ok(allowed.has(n), n);
    for (const n of ["unshare", "mount", "setns", "keyctl", "add_key", "reboot", "init_module", "bpf"])
      assert.ok(!allowed.has(n), n);
    const clone = s.syscalls!.find((x) => x.names.includes("clone"))!;
    assert.deepEqual(clone.args, [{ index: 0, value: 0x7e020000, valueTwo: 0, op: "SCMP_CMP_MASKED_EQ" }]);
    assert.deepEqual(
      s.syscalls!.find((x) => x.names.includes("clone3")),
      { names: ["clone3"], action: "SCMP_ACT_ERRNO", errnoRet: 38 },
    );
  });
  test("RuntimeDefault with CAP_SYS_ADMIN allows mount/unshare/setns and unfiltered clone", () => {
    const s = sec({
      seccomp: { profileType: SecurityProfile_ProfileType.RuntimeDefault },
      capabilities: { addCapabilities: ["SYS_ADMIN", "SYS_PTRACE"] },
    })!;
    const allowed = new Set(
      s.syscalls!.filter((x) => x.action === "SCMP_ACT_ALLOW" && !x.args).flatMap((x) => x.names),
    );
    for (const n of ["mount", "unshare", "setns", "clone", "clone3", "kcmp"]) assert.ok(allowed.has(n), n);
    assert.ok(!s.syscalls!.some((x) => x.names.includes("clone3") && x.action === "SCMP_ACT_ERRNO"));
  });
  test("Unconfined and the deprecated strings", () => {
    assert.equal(sec({ seccomp: { profileType: SecurityProfile_ProfileType.Unconfined } }), undefined);
    assert.equal(sec({ seccompProfilePath: "unconfined" }), undefined);
    assert.equal(sec({ seccompProfilePath: "runtime/default" })!.defaultAction, "SCMP_ACT_ERRNO");
    assert.equal(sec({ seccompProfilePath: "docker/default" })!.defaultAction, "SCMP_ACT_ERRNO");
    expectInvalid(() => sec({ seccompProfilePath: "bogus" }), /invalid seccomp profile "bogus"/);
  });
  test("Localhost profiles: loaded; missing or invalid ones are InvalidArgumentErrors", () => {
    const p = join(dir, "profile.json");
    writeFileSync(
      p,
      JSON.stringify({ defaultAction: "SCMP_ACT_LOG", syscalls: [{ names: ["read"], action: "SCMP_ACT_ALLOW" }] }),
    );
    const s = sec({ seccomp: { profileType: SecurityProfile_ProfileType.Localhost, localhostRef: p } })!;
    assert.deepEqual(s, { defaultAction: "SCMP_ACT_LOG", syscalls: [{ names: ["read"], action: "SCMP_ACT_ALLOW" }] });
    assert.deepEqual(sec({ seccompProfilePath: "localhost/" + p }), s);
    expectInvalid(
      () =>
        sec({ seccomp: { profileType: SecurityProfile_ProfileType.Localhost, localhostRef: join(dir, "nope.json") } }),
      /cannot read seccomp profile .*nope\.json/,
    );
    const bad = join(dir, "bad.json");
    writeFileSync(bad, "{not json");
    expectInvalid(() => sec({ seccompProfilePath: "localhost/" + bad }), /not valid JSON/);
    writeFileSync(bad, JSON.stringify({ defaultAction: "ALLOW_ALL" }));
    expectInvalid(() => sec({ seccompProfilePath: "localhost/" + bad }), /defaultAction/);
    expectInvalid(
      () => sec({ seccomp: { profileType: SecurityProfile_ProfileType.RuntimeDefault, localhostRef: p } }),
      /localhost_ref/,
    );
  });
  test("AppArmor: RuntimeDefault ignored and Localhost refused where the kernel lacks it", () => {
    assert.equal(
      build({ linux: { securityContext: { apparmorProfile: "runtime/default" } } }).process.apparmorProfile,
      undefined,
    );
    assert.throws(
      () =>
        build({
          linux: {
            securityContext: { apparmor: { profileType: SecurityProfile_ProfileType.Localhost, localhostRef: "p" } },
          },
        }),
      (e: unknown) => e instanceof FailedPreconditionError && /AppArmor is not enabled/.test(e.message),
    );
  });
});

describe("resources", () => {
  test("cpu, cpuset, memory with swap = limit", () => {
    const spec = build({
      linux: {
        resources: {
          cpuShares: 512n,
          cpuQuota: 50000n,
          cpuPeriod: 100000n,
          cpusetCpus: "0",
          cpusetMems: "0",
          memoryLimitInBytes: 64n << 20n,
        },
      },
    });
    assert.deepEqual(spec.linux.resources!.cpu, { shares: 512, quota: 50000, period: 100000, cpus: "0", mems: "0" });
    assert.deepEqual(spec.linux.resources!.memory, { limit: 64 << 20, swap: 64 << 20 });
    assert.deepEqual(spec.linux.resources!.devices, [{ allow: false, access: "rwm" }]);
  });
  test("oom_score_adj never below the daemon's own", () => {
    assert.equal(clampOomScoreAdj(-500, 0), 0);
    assert.equal(clampOomScoreAdj(500, 0), 500);
    assert.equal(clampOomScoreAdj(100, 200), 200);
    assert.throws(() => clampOomScoreAdj(1001, 0), InvalidArgumentError);
    assert.equal(build({ linux: { resources: { oomScoreAdj: -997n } } }).process.oomScoreAdj, 0);
    assert.equal(build({ linux: { resources: { oomScoreAdj: 1000n } } }).process.oomScoreAdj, 1000);
    assert.equal(build({}).process.oomScoreAdj, undefined);
  });
  test("cgroupsPath per driver", () => {
    assert.equal(build({}).linux.cgroupsPath, "/kubepods/pod1/c1");
    assert.equal(cgroupsPath("/kubepods.slice/kubepods-pod1.slice", "c1"), "kubepods-pod1.slice:berth:c1");
    assert.equal(cgroupsPath("kubepods-pod1.slice", "c1", "systemd"), "kubepods-pod1.slice:berth:c1");
    assert.equal(cgroupsPath("", "c1"), "/berth/c1");
  });
  test("pod cgroup parent: kubelet's when given, else berth's own /berth/<podId>", () => {
    assert.equal(podCgroupParent("/kubepods/pod1", "p1", "cgroupfs"), "/kubepods/pod1");
    assert.equal(podCgroupParent("kubepods-pod1.slice", "p1", "systemd"), "kubepods-pod1.slice");
    assert.equal(podCgroupParent("", "p1", "cgroupfs"), "/berth/p1");
    assert.equal(podCgroupParent(undefined, "p1"), "/berth/p1");
    assert.equal(podCgroupParent("", "p1", "systemd"), "", "systemd: no parent slice to nest in");
    // Sandbox and containers of a parentless pod sit side by side in its pod cgroup.
    assert.equal(cgroupsPath(podCgroupParent("", "p1", "cgroupfs"), "p1", "cgroupfs"), "/berth/p1/p1");
    assert.equal(cgroupsPath(podCgroupParent("", "p1", "cgroupfs"), "c1", "cgroupfs"), "/berth/p1/c1");
    assert.equal(
      cgroupsPath(podCgroupParent("/kubepods/pod1", "p1", "cgroupfs"), "c1", "cgroupfs"),
      "/kubepods/pod1/c1",
    );
    // Only berth's own pod cgroup is ever removed.
    assert.equal(podCgroupOwned("", "p1"), "/berth/p1");
    assert.equal(podCgroupOwned("/kubepods/pod1", "p1"), undefined);
  });
});

describe("mounts", () => {
  const shared = () => "27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n";
  const slave = () => "27 1 254:0 / / rw,relatime master:1 - ext4 /dev/vda rw\n";
  const priv = () => "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n";
  const bind = (spec: Spec, dst: string) => spec.mounts.find((m) => m.destination === dst);

  test("defaults, pod files and CRI binds; depth order", () => {
    const spec = build({
      mounts: [
        { containerPath: "/data/deep", hostPath: dir },
        { containerPath: "/data", hostPath: dir, readonly: true },
      ],
    });
    const dests = spec.mounts.map((m) => m.destination);
    assert.deepEqual(dests.slice(0, 6), ["/proc", "/dev", "/dev/pts", "/dev/mqueue", "/sys", "/sys/fs/cgroup"]);
    assert.ok(dests.indexOf("/data") < dests.indexOf("/data/deep"));
    assert.deepEqual(bind(spec, "/data"), {
      destination: "/data",
      type: "bind",
      source: dir,
      options: ["rbind", "rprivate", "ro"],
    });
    assert.deepEqual(bind(spec, "/etc/hosts"), {
      destination: "/etc/hosts",
      type: "bind",
      source: join(dir, "hosts"),
      options: ["rbind", "rprivate", "rw"],
    });
    assert.equal(bind(spec, "/dev/shm")!.source, join(dir, "shm"));
    assert.equal(bind(spec, "/etc/resolv.conf")!.source, join(dir, "resolv.conf"));
    assert.equal(bind(spec, "/etc/hostname")!.source, join(dir, "hostname"));
    assert.deepEqual(bind(spec, "/sys/fs/cgroup")!.options, ["nosuid", "noexec", "nodev", "relatime", "ro"]);
    assert.ok(bind(spec, "/sys")!.options!.includes("ro"));
  });
  test("a CRI mount overrides the pod's file; readonly rootfs makes pod files ro", () => {
    const spec = build({
      mounts: [{ containerPath: "/etc/hosts/", hostPath: join(dir, "resolv.conf") }],
      linux: { securityContext: { readonlyRootfs: true } },
    });
    assert.equal(spec.mounts.filter((m) => m.destination.startsWith("/etc/hosts")).length, 1);
    assert.equal(bind(spec, "/etc/hosts/")!.source, join(dir, "resolv.conf"));
    assert.ok(bind(spec, "/etc/hostname")!.options!.includes("ro"));
    assert.ok(bind(spec, "/dev/shm")!.options!.includes("rw"));
  });
  test("propagation: private, host-to-container (rslave), bidirectional (rshared)", () => {
    const mk = (propagation: MountPropagation, mountInfo: () => string) =>
      build({ mounts: [{ containerPath: "/m", hostPath: dir, propagation }] }, { extra: { mountInfo } });
    const p = mk(MountPropagation.PROPAGATION_PRIVATE, priv);
    assert.deepEqual(bind(p, "/m")!.options, ["rbind", "rprivate", "rw"]);
    assert.equal(p.linux.rootfsPropagation, undefined);
    const s = mk(MountPropagation.PROPAGATION_HOST_TO_CONTAINER, slave);
    assert.deepEqual(bind(s, "/m")!.options, ["rbind", "rslave", "rw"]);
    assert.equal(s.linux.rootfsPropagation, "rslave");
    const b = mk(MountPropagation.PROPAGATION_BIDIRECTIONAL, shared);
    assert.deepEqual(bind(b, "/m")!.options, ["rbind", "rshared", "rw"]);
    assert.equal(b.linux.rootfsPropagation, "rshared");
    expectInvalid(() => mk(MountPropagation.PROPAGATION_BIDIRECTIONAL, slave), /not a shared mount/);
    expectInvalid(() => mk(MountPropagation.PROPAGATION_HOST_TO_CONTAINER, priv), /not a shared or slave mount/);
  });
  test("a host path that is a symlink is resolved", () => {
    const link = join(dir, "link-to-shm");
    symlinkSync(join(dir, "shm"), link);
    assert.equal(bind(build({ mounts: [{ containerPath: "/m", hostPath: link }] }), "/m")!.source, join(dir, "shm"));
  });
  test("a missing host path is an InvalidArgumentError naming it", () => {
    const missing = join(dir, "does-not-exist");
    expectInvalid(
      () => build({ mounts: [{ containerPath: "/m", hostPath: missing }] }),
      new RegExp(`"${missing}" does not exist`),
    );
  });
  test("host IPC pods get the host's /dev/shm", () => {
    const spec = build({}, { pod: { linux: { securityContext: { namespaceOptions: { ipc: NamespaceMode.NODE } } } } });
    assert.equal(bind(spec, "/dev/shm")!.source, "/dev/shm");
  });
});

describe("devices", () => {
  test("a CRI device: type/major/minor from the host node, an allow rule", () => {
    const link = join(dir, "null-link");
    symlinkSync("/dev/null", link);
    const spec = build({ devices: [{ hostPath: link, containerPath: "/dev/mynull", permissions: "rw" }] });
    assert.deepEqual(
      { ...spec.linux.devices![0]!, fileMode: undefined, uid: undefined, gid: undefined },
      { type: "c", path: "/dev/mynull", major: 1, minor: 3, fileMode: undefined, uid: undefined, gid: undefined },
    );
    assert.deepEqual(spec.linux.resources!.devices![1], { allow: true, type: "c", major: 1, minor: 3, access: "rw" });
    expectInvalid(
      () => build({ devices: [{ hostPath: "/dev/nope", containerPath: "/dev/x", permissions: "r" }] }),
      /\/dev\/nope does not exist/,
    );
    expectInvalid(
      () => build({ devices: [{ hostPath: "/dev/null", containerPath: "/dev/x", permissions: "rx" }] }),
      /permissions/,
    );
  });
  test("dev_t decoding", () => {
    assert.deepEqual(splitDev(0x103n), { major: 1, minor: 3 });
    assert.deepEqual(splitDev((259n << 8n) | 0x12n | (0x34500n << 12n) | (0x1000n << 32n)), {
      major: 0x1000 | 259,
      minor: 0x34512,
    });
  });
});

describe("namespaces and annotations", () => {
  const ns = (spec: Spec) => Object.fromEntries(spec.linux.namespaces.map((n) => [n.type, n.path ?? "new"]));
  test("pod network/ipc/uts joined; own pid namespace by default", () => {
    assert.deepEqual(ns(build({})), {
      mount: "new",
      network: "/var/run/netns/pod",
      uts: "/proc/42/ns/uts",
      ipc: "/proc/42/ns/ipc",
      pid: "new",
    });
  });
  test("PID modes POD, NODE, TARGET", () => {
    const pid = (mode: NamespaceMode, extra?: object) =>
      ns(
        build(
          { linux: { securityContext: { namespaceOptions: { pid: mode, targetId: "t1" } } } },
          { extra: extra as never },
        ),
      ).pid;
    assert.equal(pid(NamespaceMode.POD), "/proc/42/ns/pid");
    assert.equal(pid(NamespaceMode.NODE), undefined);
    assert.equal(
      pid(NamespaceMode.TARGET, { podPaths: { ...podPaths(), targetPidNamespacePath: "/proc/7/ns/pid" } }),
      "/proc/7/ns/pid",
    );
    assert.throws(() => pid(NamespaceMode.TARGET), InternalError);
  });
  test("host network pods: no network or uts namespace", () => {
    const spec = build(
      {},
      { pod: { linux: { securityContext: { namespaceOptions: { network: NamespaceMode.NODE } } } } },
    );
    assert.equal(ns(spec).network, undefined);
    assert.equal(ns(spec).uts, undefined);
  });
  test("containerd's CRI annotations", () => {
    assert.deepEqual(build({}).annotations, {
      "io.kubernetes.cri.container-type": "container",
      "io.kubernetes.cri.sandbox-id": "s1",
      "io.kubernetes.cri.sandbox-namespace": "default",
      "io.kubernetes.cri.sandbox-uid": "u-1",
      "io.kubernetes.cri.sandbox-name": "pod",
      "io.kubernetes.cri.container-name": "app",
      "io.kubernetes.cri.image-name": "docker.io/library/busybox:latest",
    });
  });
});
