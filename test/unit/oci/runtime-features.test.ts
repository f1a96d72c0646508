// Unit tests of what a runtime handler announces: the runtime's own `features` output, then
// what the host probes at berthd's start saw the kernel do (applyHostProbes); each feature
// needs both. The probes themselves run for real in test/e2e/cri-userns.test.ts (Status) and
// test/e2e/sys-probes.test.ts.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  applyHostProbes,
  NO_FEATURES,
  parseRuntimeFeatures,
  runtimeCommand,
  type HostProbes,
} from "../../../src/oci/runtime-features.js";
import { firstSysSubmount } from "../../../src/cri/userns/probe.js";

const runc15 = JSON.stringify({
  mountOptions: ["bind", "ro", "rro"],
  linux: { namespaces: ["mount", "user", "network"], mountExtensions: { idmap: { enabled: true } } },
});
// Debian's runc 1.1.5 lists "rro" (runc has had it since 1.1.0) but has no idmap mounts.
const runc11 = JSON.stringify({ mountOptions: ["bind", "ro", "rro"], linux: { namespaces: ["mount", "user"] } });
const noRro = JSON.stringify({
  mountOptions: ["bind", "ro"],
  linux: { namespaces: ["mount", "user"], mountExtensions: { idmap: { enabled: true } } },
});
const ALL_WORK: HostProbes = { recursiveReadOnly: null, idmappedLayers: null, usernsHostSys: null };

describe("the runtime's word", () => {
  test("user namespaces need the runtime's idmap mounts, a user namespace, and Linux 5.19+", () => {
    assert.deepEqual(parseRuntimeFeatures(runc15, "6.18.44"), {
      installed: true,
      recursiveReadOnlyMounts: true,
      idmapMounts: true,
      userNamespaces: true,
      userNamespacesHostNetwork: false,
    });
    assert.equal(parseRuntimeFeatures(runc15, "5.19.0").userNamespaces, true);
    assert.equal(parseRuntimeFeatures(runc15, "5.15.0").userNamespaces, false); // no overlayfs on idmapped layers
    assert.equal(parseRuntimeFeatures(runc15, "5.15.0").idmapMounts, true);
    assert.equal(parseRuntimeFeatures(runc15, "5.11.0").idmapMounts, false); // no mount_setattr
    assert.equal(parseRuntimeFeatures(runc11, "6.18.44").userNamespaces, false); // runc 1.1: no idmap mounts
    const noUser = JSON.stringify({ linux: { namespaces: ["mount"], mountExtensions: { idmap: { enabled: true } } } });
    assert.equal(parseRuntimeFeatures(noUser, "6.18.44").userNamespaces, false);
    const off = JSON.stringify({ linux: { namespaces: ["user"], mountExtensions: { idmap: { enabled: false } } } });
    assert.equal(parseRuntimeFeatures(off, "6.18.44").userNamespaces, false);
  });

  test("recursive read-only is what the runtime lists, whatever the kernel release says", () => {
    // the kernel's part is probed, no longer guessed from the release
    assert.equal(parseRuntimeFeatures(runc11, "5.4.0").recursiveReadOnlyMounts, true);
    assert.equal(parseRuntimeFeatures(runc11, "6.18.44").recursiveReadOnlyMounts, true);
    assert.equal(parseRuntimeFeatures(noRro, "6.18.44").recursiveReadOnlyMounts, false);
  });

  test("a runtime that answers without JSON is installed but announces nothing", () => {
    assert.deepEqual(parseRuntimeFeatures("Usage: runsc <flags> <subcommand>", "6.18.44"), {
      ...NO_FEATURES,
      installed: true,
    });
  });

  test("binary_name may carry flags after the program", () => {
    assert.deepEqual(runtimeCommand("runsc --network=host"), ["runsc", ["--network=host"]]);
    assert.deepEqual(runtimeCommand("/usr/local/sbin/runc-1.5"), ["/usr/local/sbin/runc-1.5", []]);
  });
});

describe("the runtime's word and the host's probes", () => {
  const announced = (json: string, p: HostProbes) => {
    const f = applyHostProbes(parseRuntimeFeatures(json, "6.18.44"), p);
    return [f.recursiveReadOnlyMounts, f.userNamespaces, f.userNamespacesHostNetwork];
  };

  test("every part works: runc 1.5 announces all three, runc 1.1.5 recursive read-only only", () => {
    assert.deepEqual(announced(runc15, ALL_WORK), [true, true, true]);
    assert.deepEqual(announced(runc11, ALL_WORK), [true, false, false]);
  });

  test("a failed recursive read-only probe turns off rro, and with it the host network for user namespaces", () => {
    const p = { ...ALL_WORK, recursiveReadOnly: "mount_setattr(AT_RECURSIVE, MOUNT_ATTR_RDONLY): ENOSYS" };
    assert.deepEqual(announced(runc15, p), [false, true, false]);
    assert.deepEqual(announced(runc11, p), [false, false, false]);
  });

  test("a runtime without rro never gets the host network for user namespaces, whatever the host can do", () => {
    assert.deepEqual(announced(noRro, ALL_WORK), [false, true, false]);
  });

  test("failed idmapped layers turn off user namespaces, and so the host network for them", () => {
    assert.deepEqual(announced(runc15, { ...ALL_WORK, idmappedLayers: "mount_setattr: EINVAL" }), [true, false, false]);
  });

  test("a failed /sys probe turns off only the host network for user namespaces", () => {
    const p = { ...ALL_WORK, usernsHostSys: "open_tree /sys (rbind): EPERM" };
    assert.deepEqual(announced(runc15, p), [true, true, false]);
  });

  test("a runtime that is not installed announces nothing, whatever the host can do", () => {
    const f = applyHostProbes(NO_FEATURES, ALL_WORK);
    assert.deepEqual(f, NO_FEATURES);
  });
});

describe("the /sys submount the host probe checks", () => {
  test("the first mount point below /sys, relative to it, octal escapes undone", () => {
    const info = [
      "22 1 0:21 / /proc rw,nosuid - proc proc rw",
      "23 1 0:22 / /sys rw,nosuid - sysfs sysfs rw",
      "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755",
      "40 23 0:35 / /sys/kernel/debug rw - debugfs debugfs rw",
    ].join("\n");
    assert.equal(firstSysSubmount(info), "fs/cgroup");
    assert.equal(firstSysSubmount("50 23 0:40 / /sys/a\\040b rw - tmpfs t rw"), "a b");
    assert.equal(firstSysSubmount("23 1 0:22 / /sys rw - sysfs sysfs rw\n22 1 0:21 / /proc rw - proc proc rw"), "");
  });
});
