// Unit tests of OCI spec generation (src/cri/spec, src/oci) for the container's process: args, environment, user, capabilities: the containerd CRI
// semantics a pod relies on, checked on the generated spec. The runc end-to-end checks are in
// oci-runc.test.ts.

import assert from "node:assert/strict";
import { test, describe } from "node:test";
import { mkdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { SecurityProfile_ProfileType } from "../../../../src/gen/cri/runtime/v1/api.js";
import { DEFAULT_CAPABILITIES } from "../../../../src/oci/capabilities.js";
import type { Spec } from "../../../../src/oci/index.js";
import { mergeProcessArgs } from "../../../../src/cri/spec/index.js";
import { resolveInRoot, rootfsUserLookup, resolveProcessUser } from "../../../../src/oci/user.js";
import { HOST_CAPS, dir, rootfs, outside, build, expectInvalid } from "./fixture.js";

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
  test("masked and readonly paths: exactly the CRI's lists, none when it sends none (procMount: Unmasked)", () => {
    const none = build({});
    assert.deepEqual(none.linux.maskedPaths, []);
    assert.deepEqual(none.linux.readonlyPaths, []);
    const empty = build({ linux: { securityContext: { maskedPaths: [], readonlyPaths: [] } } });
    assert.deepEqual(empty.linux.maskedPaths, []);
    assert.deepEqual(empty.linux.readonlyPaths, []);
    const c = build({ linux: { securityContext: { maskedPaths: ["/proc/x"], readonlyPaths: ["/proc/y"] } } });
    assert.deepEqual(c.linux.maskedPaths, ["/proc/x"]);
    assert.deepEqual(c.linux.readonlyPaths, ["/proc/y"]);
  });
});
