// CDI (src/cri/cdi): spec files parsed from JSON and YAML and validated as the CDI spec
// defines them (versions, kinds, names, unknown fields, minimum versions), devices resolved
// across directories by priority (ambiguity and unknown names refused, a broken file named),
// and edits applied to an OCI spec: device nodes with host type/major/minor and their cgroup
// rule, mounts, env, hooks and additional GIDs.
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { applyCdiEdits, hostDeviceInfo } from "../../../src/cri/cdi/apply.js";
import { injectCdiDevices, requestedCdiDevices } from "../../../src/cri/cdi/inject.js";
import { editsFor, loadCdiSpecs, parseQualifiedName, resolveCdiDevices } from "../../../src/cri/cdi/registry.js";
import { CdiSpecError, minimumVersion, parseCdiSpec } from "../../../src/cri/cdi/spec.js";
import type { Spec } from "../../../src/oci/spec.js";
import { FailedPreconditionError, InvalidArgumentError } from "../../../src/util/errors.js";

const tmp = mkdtempSync(join(tmpdir(), "berth-cdi-unit-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

function baseSpec(uid = 0, gid = 0): Spec {
  return {
    ociVersion: "1.0.2-dev",
    process: { user: { uid, gid }, args: ["sh"], env: ["PATH=/bin", "KEEP=1"], cwd: "/" },
    root: { path: "rootfs" },
    mounts: [
      { destination: "/proc", type: "proc", source: "proc" },
      { destination: "/dev", type: "tmpfs", source: "tmpfs" },
    ],
    linux: { namespaces: [], resources: { devices: [{ allow: false, access: "rwm" }] } },
  };
}

const yamlSpec = `
cdiVersion: "0.6.0"
kind: vendor.example/dev
annotations: { owner: test }
containerEdits:
  env: [VENDOR_ANY=1]
devices:
  - name: one
    containerEdits:
      env: [VENDOR_ONE=1]
      deviceNodes:
        - path: /dev/vendor-one
          hostPath: /dev/null
  - name: "2"
    containerEdits:
      mounts:
        - { hostPath: /opt/vendor, containerPath: /usr/lib/vendor, type: bind, options: [ro, rbind] }
`;

test("parses YAML and JSON specs", () => {
  const y = parseCdiSpec(yamlSpec, "/etc/cdi/vendor.yaml");
  assert.equal(y.kind, "vendor.example/dev");
  assert.deepEqual(
    y.devices.map((d) => d.name),
    ["one", "2"],
  );
  assert.deepEqual(y.containerEdits, { env: ["VENDOR_ANY=1"] });
  const j = parseCdiSpec(JSON.stringify({ cdiVersion: "v0.3.0", kind: "a.b/c", devices: [{ name: "x" }] }), "f.json");
  assert.equal(j.cdiVersion, "0.3.0");
  assert.deepEqual(j.devices[0]!.containerEdits, {});
});

test("refuses specs that break the CDI spec's rules", () => {
  const ok = { cdiVersion: "0.7.0", kind: "vendor.com/gpu", devices: [{ name: "g0", containerEdits: {} }] };
  const bad: [string, unknown][] = [
    ["unknown cdiVersion", { ...ok, cdiVersion: "9.9.9" }],
    ["missing cdiVersion", { ...ok, cdiVersion: undefined }],
    ["kind without vendor", { ...ok, kind: "gpu" }],
    ["kind with two slashes", { ...ok, kind: "vendor.com/gpu/x" }],
    ["no devices", { ...ok, devices: [] }],
    ["device without name", { ...ok, devices: [{ containerEdits: {} }] }],
    ["bad device name", { ...ok, devices: [{ name: "-x" }] }],
    ["duplicate device", { ...ok, devices: [{ name: "a" }, { name: "a" }] }],
    ["unknown top-level field", { ...ok, extra: 1 }],
    ["unknown edit field", { ...ok, devices: [{ name: "a", containerEdits: { envs: [] } }] }],
    ["env not NAME=VALUE", { ...ok, devices: [{ name: "a", containerEdits: { env: ["X"] } }] }],
    ["relative hook path", { ...ok, containerEdits: { hooks: [{ hookName: "prestart", path: "x" }] } }],
    ["unknown hook name", { ...ok, containerEdits: { hooks: [{ hookName: "later", path: "/x" }] } }],
    ["zero hook timeout", { ...ok, containerEdits: { hooks: [{ hookName: "prestart", path: "/x", timeout: 0 }] } }],
    ["relative device path", { ...ok, containerEdits: { deviceNodes: [{ path: "dev/x" }] } }],
    ["bad permissions", { ...ok, containerEdits: { deviceNodes: [{ path: "/dev/x", permissions: "rx" }] } }],
    ["negative gid", { ...ok, containerEdits: { additionalGids: [-1] } }],
    [
      "hostPath needs 0.5.0",
      { ...ok, cdiVersion: "0.4.0", containerEdits: { deviceNodes: [{ path: "/a", hostPath: "/b" }] } },
    ],
    ["additionalGids needs 0.7.0", { ...ok, cdiVersion: "0.6.0", containerEdits: { additionalGids: [5] } }],
    ["netDevices needs 1.1.0", { ...ok, containerEdits: { netDevices: [{ hostInterfaceName: "a", name: "b" }] } }],
  ];
  for (const [what, doc] of bad) assert.throws(() => parseCdiSpec(JSON.stringify(doc), "f.json"), CdiSpecError, what);
  assert.throws(() => parseCdiSpec("{", "f.json"), /not valid JSON/);
  assert.throws(() => parseCdiSpec("a: [", "f.yaml"), /not valid YAML/);
});

test("minimum versions follow the fields used", () => {
  const spec = (extra: object) => ({
    cdiVersion: "1.1.0",
    kind: "v.com/c",
    devices: [{ name: "a", containerEdits: {} }],
    ...extra,
  });
  assert.equal(minimumVersion(parseCdiSpec(JSON.stringify(spec({})), "f.json")), "0.3.0");
  assert.equal(minimumVersion(parseCdiSpec(JSON.stringify(spec({ kind: "v.com/c.d" })), "f.json")), "0.6.0");
  assert.equal(minimumVersion(parseCdiSpec(JSON.stringify(spec({ devices: [{ name: "0a" }] })), "f.json")), "0.5.0");
  const withMountType = spec({ containerEdits: { mounts: [{ hostPath: "/a", containerPath: "/b", type: "bind" }] } });
  assert.equal(minimumVersion(parseCdiSpec(JSON.stringify(withMountType), "f.json")), "0.4.0");
});

test("qualified names and what a container asks for", () => {
  assert.deepEqual(parseQualifiedName("vendor.example/dev=one"), { kind: "vendor.example/dev", device: "one" });
  assert.equal(parseQualifiedName("one"), undefined);
  assert.equal(parseQualifiedName("vendor/dev=a=b"), undefined);
  assert.deepEqual(
    requestedCdiDevices({
      annotations: { "cdi.k8s.io/b": "v.com/c=2, v.com/c=1", "cdi.k8s.io/a": "v.com/c=0", other: "v.com/c=9" },
      CDIDevices: [{ name: "v.com/c=1" }, { name: "v.com/c=3" }],
    }),
    ["v.com/c=0", "v.com/c=2", "v.com/c=1", "v.com/c=3"],
  );
});

test("resolution across directories: priority, ambiguity, unknown names, broken files", async () => {
  const low = join(tmp, "etc-cdi");
  const high = join(tmp, "run-cdi");
  mkdirSync(low);
  mkdirSync(high);
  const spec = (name: string, env: string) =>
    JSON.stringify({ cdiVersion: "0.3.0", kind: "v.com/c", devices: [{ name, containerEdits: { env: [env] } }] });
  writeFileSync(join(low, "a.json"), spec("x", "FROM=low"));
  writeFileSync(join(high, "a.json"), spec("x", "FROM=high"));
  writeFileSync(join(low, "b.yaml"), spec("y", "FROM=b")); // JSON is YAML too
  writeFileSync(join(low, "c.json"), spec("y", "FROM=c"));
  writeFileSync(join(low, "notes.txt"), "not a spec");
  const specs = await loadCdiSpecs([low, high, join(tmp, "missing")]);
  assert.equal(specs.length, 4);
  const [x] = resolveCdiDevices(specs, ["v.com/c=x"]);
  assert.deepEqual(x!.device.containerEdits.env, ["FROM=high"], "the later directory wins");
  assert.throws(
    () => resolveCdiDevices(specs, ["v.com/c=y"]),
    (e: Error) =>
      e instanceof InvalidArgumentError &&
      /ambiguous/.test(e.message) &&
      e.message.includes("b.yaml") &&
      e.message.includes("c.json"),
  );
  assert.throws(
    () => resolveCdiDevices(specs, ["v.com/c=nope"]),
    (e: Error) => e instanceof InvalidArgumentError && e.message.includes("v.com/c=nope"),
  );
  assert.throws(() => resolveCdiDevices(specs, ["nope"]), InvalidArgumentError);

  writeFileSync(join(high, "broken.yaml"), "cdiVersion: [");
  await assert.rejects(
    loadCdiSpecs([low, high]),
    (e: Error) => e instanceof FailedPreconditionError && e.message.includes(join(high, "broken.yaml")),
  );
  rmSync(join(high, "broken.yaml"));
});

test("spec-level edits apply once per spec file, before its devices' own", () => {
  const file = { file: "/etc/cdi/v.json", priority: 0, spec: parseCdiSpec(yamlSpec, "v.yaml") };
  const devices = resolveCdiDevices([file], ["vendor.example/dev=one", "vendor.example/dev=2"]);
  assert.deepEqual(
    editsFor(devices).map((e) => e.source),
    ["/etc/cdi/v.json", "vendor.example/dev=one", "vendor.example/dev=2"],
  );
});

test("device nodes: host type/major/minor/mode, the cgroup rule, ownership of a non-root process", () => {
  const spec = baseSpec(1000, 1000);
  applyCdiEdits(spec, { deviceNodes: [{ path: "/dev/vendor-one", hostPath: "/dev/null" }] }, "t");
  const st = statSync("/dev/null");
  const host = hostDeviceInfo("/dev/null");
  assert.deepEqual(host, { type: "c", major: 1, minor: 3, fileMode: st.mode & 0o7777 });
  assert.deepEqual(spec.linux.devices, [
    { type: "c", path: "/dev/vendor-one", major: 1, minor: 3, fileMode: st.mode & 0o7777, uid: 1000, gid: 1000 },
  ]);
  assert.deepEqual(spec.linux.resources!.devices!.at(-1), {
    allow: true,
    type: "c",
    major: 1,
    minor: 3,
    access: "rwm",
  });

  // Given explicitly (no host node needed), "none" permissions, replacing a node at the same path.
  applyCdiEdits(
    spec,
    { deviceNodes: [{ path: "/dev/vendor-one", type: "b", major: 8, minor: 1, permissions: "none" }] },
    "t",
    () => {
      throw new Error("no such node");
    },
  );
  assert.equal(spec.linux.devices!.length, 1);
  assert.deepEqual(spec.linux.devices![0], {
    type: "b",
    path: "/dev/vendor-one",
    major: 8,
    minor: 1,
    uid: 1000,
    gid: 1000,
  });
  assert.deepEqual(spec.linux.resources!.devices!.at(-1), { allow: true, type: "b", major: 8, minor: 1, access: "" });

  assert.throws(
    () => applyCdiEdits(baseSpec(), { deviceNodes: [{ path: "/dev/missing-xyz" }] }, "v.com/c=a"),
    (e: Error) => e instanceof FailedPreconditionError && e.message.includes("/dev/missing-xyz"),
  );
  assert.throws(
    () => applyCdiEdits(baseSpec(), { deviceNodes: [{ path: "/dev/x", hostPath: "/dev/null", type: "b" }] }, "t"),
    /type b/,
  );
});

test("env, mounts, hooks, additional GIDs; intelRdt and netDevices refused", () => {
  const spec = baseSpec();
  applyCdiEdits(
    spec,
    {
      env: ["KEEP=2", "NEW=x"],
      mounts: [
        { hostPath: "/opt/a", containerPath: "/usr/lib/a/b", options: ["ro", "rbind"] },
        { hostPath: "/opt", containerPath: "/usr/lib/a", type: "bind", options: ["rbind"] },
      ],
      hooks: [
        { hookName: "createContainer", path: "/usr/bin/vendor-hook", args: ["vendor-hook", "x"], timeout: 5 },
        { hookName: "poststop", path: "/bin/true" },
      ],
      additionalGids: [0, 44, 44, 45],
    },
    "t",
  );
  assert.deepEqual(spec.process.env, ["PATH=/bin", "KEEP=2", "NEW=x"]);
  assert.deepEqual(
    spec.mounts.map((m) => m.destination),
    ["/proc", "/dev", "/usr/lib/a", "/usr/lib/a/b"],
    "a parent mount before what is below it",
  );
  assert.deepEqual(spec.mounts[2], { destination: "/usr/lib/a", source: "/opt", type: "bind", options: ["rbind"] });
  assert.deepEqual(spec.hooks, {
    createContainer: [{ path: "/usr/bin/vendor-hook", args: ["vendor-hook", "x"], timeout: 5 }],
    poststop: [{ path: "/bin/true" }],
  });
  assert.deepEqual(spec.process.user.additionalGids, [44, 45]);
  assert.throws(() => applyCdiEdits(baseSpec(), { intelRdt: { closID: "x" } }, "t"), FailedPreconditionError);
  assert.throws(
    () => applyCdiEdits(baseSpec(), { netDevices: [{ hostInterfaceName: "a", name: "b" }] }, "t"),
    FailedPreconditionError,
  );
});

test("injectCdiDevices: the whole path, and no file read without a request", async () => {
  const dir = join(tmp, "inject");
  mkdirSync(dir);
  writeFileSync(join(dir, "vendor.yaml"), yamlSpec);
  const spec = baseSpec();
  await injectCdiDevices(spec, ["vendor.example/dev=one"], [dir]);
  assert.deepEqual(spec.process.env, ["PATH=/bin", "KEEP=1", "VENDOR_ANY=1", "VENDOR_ONE=1"]);
  assert.equal(spec.linux.devices![0]!.path, "/dev/vendor-one");
  writeFileSync(join(dir, "broken.json"), "{");
  const untouched = baseSpec();
  await injectCdiDevices(untouched, [], [dir]);
  assert.deepEqual(untouched, baseSpec());
  await assert.rejects(injectCdiDevices(baseSpec(), ["vendor.example/dev=one"], [dir]), /broken\.json/);
});
