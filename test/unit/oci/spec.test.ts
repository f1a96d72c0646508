// Unit tests of OCI spec generation (src/oci): the containerd CRI semantics a pod relies
// on, checked on the generated spec. The runc end-to-end checks are in oci-runc.test.ts.

import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  ContainerConfig,
  MountPropagation,
  NamespaceMode,
  PodSandboxConfig,
  SecurityProfile_ProfileType,
} from "../../../src/gen/cri/runtime/v1/api.js";
import { InvalidArgumentError, InternalError } from "../../../src/util/errors.js";
import {
  buildContainerSpec,
  buildSandboxSpec,
  cgroupsPath,
  mergeProcessArgs,
  type ContainerSpecInput,
  type HostFacts,
  type Spec,
} from "../../../src/oci/index.js";
import { KNOWN_CAPABILITIES, DEFAULT_CAPABILITIES } from "../../../src/oci/capabilities.js";
import { resolveInRoot, rootfsUserLookup, resolveProcessUser } from "../../../src/oci/user.js";
import { clampOomScoreAdj } from "../../../src/oci/resources.js";
import { podCgroupOwned, podCgroupParent } from "../../../src/oci/cgroups-path.js";
import { splitDev } from "../../../src/oci/devices.js";
import type { ImageRuntimeConfig } from "../../../src/images/mediatypes.js";

// The images layer's config type is accepted as the image config as it is.
const _imageConfigFits: ContainerSpecInput["image"]["config"] = {} as ImageRuntimeConfig;
void _imageConfigFits;

// The daemon here lacks CAP_SYS_RESOURCE, like the test machine.
const HOST_CAPS = KNOWN_CAPABILITIES.filter((c) => c !== "CAP_SYS_RESOURCE");
const host: HostFacts = {
  oomScoreAdj: 0,
  capabilities: HOST_CAPS,
  apparmorEnabled: false,
  cgroupV2: false,
  swapControllerAvailable: true,
  hugetlbAvailable: false,
  kernelRelease: "6.1.0",
  hostname: "node-1",
};

let dir: string;
let rootfs: string;
let outside: string;

before(() => {
  dir = mkdtempSync(join(tmpdir(), "berth-oci-spec-"));
  rootfs = join(dir, "rootfs");
  outside = join(dir, "outside");
  mkdirSync(join(rootfs, "etc"), { recursive: true });
  mkdirSync(outside);
  writeFileSync(
    join(rootfs, "etc/passwd"),
    "root:x:0:0:root:/root:/bin/sh\n# comment\nalice:x:1001:1001::/home/alice:/bin/sh\nbob:x:1002:1002::/home/bob:/bin/sh\n",
  );
  writeFileSync(
    join(rootfs, "etc/group"),
    "root:x:0:\nalice:x:1001:alice\nbob:x:1002:\ndevs:x:2000:alice,bob\naudio:x:2001:alice\nstaff:x:2002:bob\n",
  );
  for (const f of ["hosts", "hostname", "resolv.conf"]) writeFileSync(join(dir, f), "x\n");
  mkdirSync(join(dir, "shm"));
  writeFileSync(join(outside, "passwd"), "evil:x:4242:4242::/:/bin/sh\n");
});

after(() => rmSync(dir, { recursive: true, force: true }));

const podPaths = () => ({
  netnsPath: "/var/run/netns/pod",
  ipcPath: "/proc/42/ns/ipc",
  utsPath: "/proc/42/ns/uts",
  pidNamespacePath: "/proc/42/ns/pid",
  resolvConf: join(dir, "resolv.conf"),
  hosts: join(dir, "hosts"),
  hostname: join(dir, "hostname"),
  shm: join(dir, "shm"),
});

type CtrPartial = Parameters<typeof ContainerConfig.fromPartial>[0];
type PodPartial = Parameters<typeof PodSandboxConfig.fromPartial>[0];

function build(
  container: CtrPartial,
  opts: { pod?: PodPartial; image?: ContainerSpecInput["image"]["config"]; extra?: Partial<ContainerSpecInput> } = {},
): Spec {
  return buildContainerSpec({
    id: "c1",
    sandboxId: "s1",
    // The generated CRI types are passed as they are (structural compatibility).
    container: ContainerConfig.fromPartial({ metadata: { name: "app" }, image: { image: "busybox" }, ...container }),
    sandbox: PodSandboxConfig.fromPartial({
      metadata: { name: "pod", namespace: "default", uid: "u-1" },
      hostname: "pod-host",
      linux: { cgroupParent: "/kubepods/pod1" },
      ...opts.pod,
    }),
    image: { name: "docker.io/library/busybox:latest", config: opts.image ?? { Cmd: ["sh"] } },
    rootfsPath: rootfs,
    podPaths: podPaths(),
    host,
    ...(opts.extra as object),
  });
}

function expectInvalid(fn: () => unknown, re: RegExp) {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof InvalidArgumentError, `expected InvalidArgumentError, got ${String(err)}`);
    assert.match((err as Error).message, re);
    return true;
  });
}

describe("process args", () => {
  const image = { Entrypoint: ["/entry"], Cmd: ["default-arg"] };
  test("nothing from the CRI: image entrypoint + cmd", () => {
    assert.deepEqual(mergeProcessArgs([], [], image), ["/entry", "default-arg"]);
  });
  test("CRI args replace the image cmd, entrypoint kept", () => {
    assert.deepEqual(mergeProcessArgs([], ["a", "b"], image), ["/entry", "a", "b"]);
  });
  test("CRI command replaces the entrypoint and drops the image cmd", () => {
    assert.deepEqual(mergeProcessArgs(["/bin/sh"], [], image), ["/bin/sh"]);
  });
  test("CRI command and args", () => {
    assert.deepEqual(mergeProcessArgs(["/bin/sh"], ["-c", "true"], image), ["/bin/sh", "-c", "true"]);
  });
  test('an entrypoint of [""] means none', () => {
    assert.deepEqual(mergeProcessArgs([], [], { Entrypoint: [""], Cmd: ["top"] }), ["top"]);
  });
  test("no command anywhere is an InvalidArgumentError", () => {
    expectInvalid(() => mergeProcessArgs([], [], {}), /no command specified/);
  });
});

describe("environment and working dir", () => {
  test("image env first, CRI env overrides by key, HOSTNAME from the pod", () => {
    const spec = build(
      {
        envs: [
          { key: "A", value: Buffer.from("cri") },
          { key: "C", value: Buffer.from("3") },
        ],
      },
      { image: { Cmd: ["sh"], Env: ["PATH=/image/bin", "A=image", "B=2"] } },
    );
    assert.deepEqual(spec.process.env, ["PATH=/image/bin", "HOSTNAME=pod-host", "A=cri", "B=2", "C=3"]);
    assert.equal(spec.process.terminal, false);
  });
  test("default PATH, TERM=xterm with a tty, node hostname when the pod has none", () => {
    const spec = build({ tty: true }, { pod: { hostname: "" } });
    assert.deepEqual(spec.process.env, [
      "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
      "TERM=xterm",
      "HOSTNAME=node-1",
    ]);
    assert.equal(spec.process.terminal, true);
  });
  test("working dir: CRI, else image, else /", () => {
    assert.equal(build({ workingDir: "/cri" }, { image: { Cmd: ["x"], WorkingDir: "/img" } }).process.cwd, "/cri");
    assert.equal(build({}, { image: { Cmd: ["x"], WorkingDir: "/img" } }).process.cwd, "/img");
    assert.equal(build({}).process.cwd, "/");
    expectInvalid(() => build({ workingDir: "rel" }), /absolute/);
  });
});

describe("user", () => {
  const lookup = () => rootfsUserLookup(rootfs);
  test("root by default, with no groups", () => {
    assert.deepEqual(build({}).process.user, { uid: 0, gid: 0 });
  });
  test("RunAsUser known to the image gets its primary group and member groups", () => {
    const spec = build({ linux: { securityContext: { runAsUser: { value: 1001n } } } });
    assert.deepEqual(spec.process.user, { uid: 1001, gid: 1001, additionalGids: [2000, 2001] });
  });
  test("RunAsUser unknown to the image runs with gid 0", () => {
    assert.deepEqual(build({ linux: { securityContext: { runAsUser: { value: 1000n } } } }).process.user, {
      uid: 1000,
      gid: 0,
    });
  });
  test("RunAsUser + RunAsGroup + supplemental groups (merged, sorted, unique)", () => {
    const spec = build({
      linux: {
        securityContext: {
          runAsUser: { value: 1002n },
          runAsGroup: { value: 3000n },
          supplementalGroups: [5000n, 2000n],
        },
      },
    });
    assert.deepEqual(spec.process.user, { uid: 1002, gid: 3000, additionalGids: [2000, 2002, 5000] });
  });
  test("RunAsUsername is looked up in the image's /etc/passwd", () => {
    const spec = build({ linux: { securityContext: { runAsUsername: "bob" } } });
    assert.deepEqual(spec.process.user, { uid: 1002, gid: 1002, additionalGids: [2000, 2002] });
    expectInvalid(
      () => build({ linux: { securityContext: { runAsUsername: "nobody-here" } } }),
      /"nobody-here".*\/etc\/passwd/,
    );
  });
  test("image USER forms: name, uid, name:group, uid:gid", () => {
    const u = (User: string) => build({}, { image: { Cmd: ["x"], User } }).process.user;
    assert.deepEqual(u("alice"), { uid: 1001, gid: 1001, additionalGids: [2000, 2001] });
    assert.deepEqual(u("1001"), { uid: 1001, gid: 1001, additionalGids: [2000, 2001] });
    assert.deepEqual(u("alice:staff"), { uid: 1001, gid: 2002, additionalGids: [2000, 2001] });
    assert.deepEqual(u("1234:5678"), { uid: 1234, gid: 5678 });
    expectInvalid(() => u("alice:nogroup"), /"nogroup".*\/etc\/group/);
    expectInvalid(() => u("a:b:c"), /invalid user/);
    expectInvalid(() => u("99999999999"), /out of range/);
  });
  test("CRI user wins over the image USER", () => {
    const spec = build(
      { linux: { securityContext: { runAsUser: { value: 7n } } } },
      { image: { Cmd: ["x"], User: "alice" } },
    );
    assert.deepEqual(spec.process.user, { uid: 7, gid: 0 });
  });
  test("RunAsGroup without a user is an InvalidArgumentError", () => {
    expectInvalid(() => build({ linux: { securityContext: { runAsGroup: { value: 5n } } } }), /RunAsGroup/);
  });
  test("Strict supplemental groups policy ignores /etc/group", () => {
    const spec = build({
      linux: {
        securityContext: { runAsUser: { value: 1001n }, supplementalGroups: [9n], supplementalGroupsPolicy: 1 },
      },
    });
    assert.deepEqual(spec.process.user, { uid: 1001, gid: 1001, additionalGids: [9] });
  });
  test("a symlinked /etc/passwd pointing outside the rootfs is not followed out", () => {
    const r = join(dir, "evil-rootfs");
    mkdirSync(join(r, "etc"), { recursive: true });
    // Absolute and relative escapes both resolve inside the rootfs (where nothing is).
    symlinkSync(join(outside, "passwd"), join(r, "etc/passwd"));
    symlinkSync("../../../../../../../../.." + join(outside, "passwd"), join(r, "etc/group"));
    assert.equal(resolveInRoot(r, "/etc/passwd"), join(r, outside, "passwd"));
    assert.equal(resolveInRoot(r, "/etc/group"), join(r, outside, "passwd"));
    const l = rootfsUserLookup(r);
    assert.equal(l.passwd(), null);
    assert.equal(l.group(), null);
    expectInvalid(() => resolveProcessUser({ imageUser: "evil" }, l), /"evil".*not in the image's \/etc\/passwd/);
    // A link that stays inside the rootfs is followed.
    mkdirSync(join(r, "data"));
    writeFileSync(join(r, "data/passwd"), "carol:x:3000:3000::/:/bin/sh\n");
    rmSync(join(r, "etc/passwd"));
    symlinkSync("/data/passwd", join(r, "etc/passwd"));
    assert.deepEqual(resolveProcessUser({ imageUser: "carol" }, rootfsUserLookup(r)), {
      uid: 3000,
      gid: 3000,
      additionalGids: [],
    });
  });
  test("a directory or special file at /etc/passwd is refused, not read", () => {
    const r = join(dir, "dir-rootfs");
    mkdirSync(join(r, "etc/passwd"), { recursive: true });
    expectInvalid(() => rootfsUserLookup(r).passwd(), /not a regular file/);
  });
  test("lookup() of the caller is used instead of the rootfs", () => {
    const spec = build(
      { linux: { securityContext: { runAsUsername: "zed" } } },
      {
        extra: {
          userLookup: { passwd: () => [{ name: "zed", uid: 55, gid: 66, home: "/", shell: "" }], group: () => null },
        },
      },
    );
    assert.deepEqual(spec.process.user, { uid: 55, gid: 66 });
    void lookup;
  });
});

describe("capabilities and privileges", () => {
  const caps = (spec: Spec) => spec.process.capabilities!;
  test("default set, same in bounding/effective/permitted, ambient and inheritable empty", () => {
    const c = caps(build({}));
    assert.deepEqual(c.bounding, [...DEFAULT_CAPABILITIES]);
    assert.deepEqual(c.effective, [...DEFAULT_CAPABILITIES]);
    assert.deepEqual(c.permitted, [...DEFAULT_CAPABILITIES]);
    assert.deepEqual(c.ambient, []);
    assert.deepEqual(c.inheritable, []);
  });
  test("drop CHOWN, add NET_ADMIN (with or without CAP_ prefix, any case)", () => {
    const c = caps(
      build({
        linux: {
          securityContext: { capabilities: { dropCapabilities: ["chown"], addCapabilities: ["CAP_NET_ADMIN"] } },
        },
      }),
    );
    assert.ok(!c.bounding.includes("CAP_CHOWN"));
    assert.ok(c.bounding.includes("CAP_NET_ADMIN"));
  });
  test("add ALL + drop CHOWN = every capability the daemon has but CHOWN", () => {
    const c = caps(
      build({
        linux: { securityContext: { capabilities: { addCapabilities: ["ALL"], dropCapabilities: ["CHOWN"] } } },
      }),
    );
    assert.deepEqual(
      c.bounding,
      HOST_CAPS.filter((x) => x !== "CAP_CHOWN"),
    );
  });
  test("drop ALL + add NET_BIND_SERVICE = only that one", () => {
    const c = caps(
      build({
        linux: {
          securityContext: { capabilities: { dropCapabilities: ["ALL"], addCapabilities: ["NET_BIND_SERVICE"] } },
        },
      }),
    );
    assert.deepEqual(c.bounding, ["CAP_NET_BIND_SERVICE"]);
  });
  test("an unknown capability name is an InvalidArgumentError", () => {
    expectInvalid(
      () => build({ linux: { securityContext: { capabilities: { addCapabilities: ["FLY"] } } } }),
      /unknown capability "FLY"/,
    );
  });
  test("no_new_privs and readonly rootfs", () => {
    const spec = build({ linux: { securityContext: { noNewPrivs: true, readonlyRootfs: true } } });
    assert.equal(spec.process.noNewPrivileges, true);
    assert.deepEqual(spec.root, { path: rootfs, readonly: true });
    assert.equal(build({}).process.noNewPrivileges, false);
  });
  test("privileged: daemon's caps, no seccomp, no masked/readonly paths, rw sysfs and cgroup, all devices", () => {
    const spec = build(
      {
        linux: {
          securityContext: { privileged: true, seccomp: { profileType: SecurityProfile_ProfileType.RuntimeDefault } },
        },
      },
      { pod: { linux: { securityContext: { privileged: true } } } },
    );
    assert.deepEqual(caps(spec).bounding, HOST_CAPS);
    assert.equal(spec.linux.seccomp, undefined);
    assert.deepEqual(spec.linux.maskedPaths, []);
    assert.deepEqual(spec.linux.readonlyPaths, []);
    assert.ok(spec.mounts.find((m) => m.type === "sysfs")!.options!.includes("rw"));
    assert.ok(spec.mounts.find((m) => m.type === "cgroup")!.options!.includes("rw"));
    assert.deepEqual(spec.linux.resources!.devices, [{ allow: true, access: "rwm" }]);
    assert.ok(spec.linux.devices!.some((d) => d.path === "/dev/null"));
  });
  test("a privileged container in a non-privileged pod is refused", () => {
    expectInvalid(() => build({ linux: { securityContext: { privileged: true } } }), /privileged/);
  });
  test("masked and readonly paths: the CRI's lists, defaults when none", () => {
    const d = build({});
    assert.ok(d.linux.maskedPaths!.includes("/proc/kcore"));
    assert.ok(d.linux.readonlyPaths!.includes("/proc/sys"));
    const c = build({ linux: { securityContext: { maskedPaths: ["/proc/x"], readonlyPaths: ["/proc/y"] } } });
    assert.deepEqual(c.linux.maskedPaths, ["/proc/x"]);
    assert.deepEqual(c.linux.readonlyPaths, ["/proc/y"]);
  });
});

describe("seccomp", () => {
  const sec = (securityContext: object) => build({ linux: { securityContext } }).linux.seccomp;
  test("unset: unconfined, as containerd", () => {
    assert.equal(sec({}), undefined);
  });
  test("RuntimeDefault: EPERM default, clone namespace filter, clone3 ENOSYS, no unshare", () => {
    const s = sec({ seccomp: { profileType: SecurityProfile_ProfileType.RuntimeDefault } })!;
    assert.equal(s.defaultAction, "SCMP_ACT_ERRNO");
    assert.equal(s.defaultErrnoRet, 1);
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
    expectInvalid(
      () =>
        build({
          linux: {
            securityContext: { apparmor: { profileType: SecurityProfile_ProfileType.Localhost, localhostRef: "p" } },
          },
        }),
      /AppArmor is not enabled/,
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
    assert.equal(s.linux.seccomp!.defaultAction, "SCMP_ACT_ERRNO");
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
