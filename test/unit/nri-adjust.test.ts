// An NRI plugin's ContainerAdjustment applied to the OCI spec: additions and "-"-marked
// removals of annotations, env, mounts, devices, sysctls and namespaces; hooks appended;
// rlimits and resources set; the command replaced; CDI devices handed back; and every field
// berth cannot apply refused by name (UNIMPLEMENTED), never dropped.
import assert from "node:assert/strict";
import { test } from "node:test";

import { ContainerAdjustment } from "../../src/gen/nri/api.js";
import { applyAdjustment, mergeAdjustments } from "../../src/nri/adjust.js";
import { containerFromSpec } from "../../src/nri/spec-view.js";
import type { Spec } from "../../src/oci/spec.js";
import { InvalidArgumentError, UnimplementedError } from "../../src/util/errors.js";

function baseSpec(): Spec {
  return {
    ociVersion: "1.0.2-dev",
    process: {
      user: { uid: 0, gid: 0 },
      args: ["/pause"],
      env: ["PATH=/bin", "KEEP=1", "DROP=x"],
      cwd: "/",
      rlimits: [{ type: "RLIMIT_NOFILE", soft: 1024, hard: 1024 }],
    },
    root: { path: "/rootfs" },
    mounts: [
      { destination: "/proc", type: "proc", source: "proc" },
      { destination: "/data", type: "bind", source: "/old", options: ["rbind"] },
    ],
    annotations: { keep: "1", drop: "x" },
    linux: {
      namespaces: [{ type: "pid" }, { type: "ipc", path: "/proc/1/ns/ipc" }],
      resources: { memory: { limit: 1 << 20 }, cpu: { shares: 2 } },
    },
  };
}

const adjust = (a: Partial<ContainerAdjustment>) => ContainerAdjustment.fromPartial(a);

test("annotations, env and mounts: set, replaced and removed", () => {
  const spec = baseSpec();
  const rest = applyAdjustment(
    spec,
    adjust({
      annotations: { added: "a", "-drop": "" },
      env: [
        { key: "NEW", value: "n" },
        { key: "PATH", value: "/usr/bin" },
        { key: "-DROP", value: "" },
      ],
      mounts: [
        { destination: "/data", type: "bind", source: "/new", options: ["rbind", "ro"] },
        { destination: "-/proc", type: "", source: "", options: [] },
      ],
      CDIDevices: [{ name: "vendor.example/dev=one" }],
    }),
    "00-test",
  );
  assert.deepEqual(spec.annotations, { keep: "1", added: "a" });
  assert.deepEqual(spec.process.env, ["KEEP=1", "NEW=n", "PATH=/usr/bin"]);
  assert.deepEqual(spec.mounts, [{ destination: "/data", type: "bind", source: "/new", options: ["rbind", "ro"] }]);
  assert.deepEqual(rest.cdiDevices, ["vendor.example/dev=one"]);
});

test("hooks appended, rlimits replaced by type, args replaced (also through UpdateArgs' marker)", () => {
  const spec = baseSpec();
  applyAdjustment(
    spec,
    adjust({
      hooks: {
        prestart: [],
        createRuntime: [{ path: "/bin/hook", args: ["hook", "x"], env: ["A=1"], timeout: { value: 5n } }],
        createContainer: [],
        startContainer: [],
        poststart: [],
        poststop: [{ path: "/bin/cleanup", args: [], env: [], timeout: undefined }],
      },
      rlimits: [
        { type: "RLIMIT_NOFILE", soft: 4096n, hard: 8192n },
        { type: "RLIMIT_NPROC", soft: 10n, hard: 20n },
      ],
      args: ["/bin/sh", "-c", "true"],
    }),
    "00-test",
  );
  assert.deepEqual(spec.hooks, {
    createRuntime: [{ path: "/bin/hook", args: ["hook", "x"], env: ["A=1"], timeout: 5 }],
    poststop: [{ path: "/bin/cleanup" }],
  });
  assert.deepEqual(spec.process.rlimits, [
    { type: "RLIMIT_NOFILE", soft: 4096, hard: 8192 },
    { type: "RLIMIT_NPROC", soft: 10, hard: 20 },
  ]);
  assert.deepEqual(spec.process.args, ["/bin/sh", "-c", "true"]);
  applyAdjustment(spec, adjust({ args: ["", "/bin/true"] }), "01-other");
  assert.deepEqual(spec.process.args, ["/bin/true"]);
});

test("linux: devices with their cgroup rule, resources, cgroups path, OOM score, sysctls, namespaces", () => {
  const spec = baseSpec();
  applyAdjustment(
    spec,
    adjust({
      linux: {
        devices: [
          {
            path: "/dev/xnull",
            type: "c",
            major: 1n,
            minor: 3n,
            fileMode: { value: 0o666 },
            uid: undefined,
            gid: undefined,
          },
        ],
        resources: {
          memory: { limit: { value: 64n << 20n }, swappiness: { value: 0n } } as never,
          cpu: {
            shares: { value: 512n },
            quota: { value: 50000n },
            period: { value: 100000n },
            cpus: "0",
            mems: "",
          } as never,
          hugepageLimits: [{ pageSize: "2MB", limit: 0n }],
          unified: { "memory.high": "max" },
          devices: [],
          pids: { limit: 64n },
          blockioClass: undefined,
          rdtClass: undefined,
        },
        cgroupsPath: "/custom/path",
        oomScoreAdj: { value: 500n },
        sysctl: { "net.ipv4.ip_forward": "1" },
        namespaces: [
          { type: "-ipc", path: "" },
          { type: "network", path: "/var/run/netns/x" },
        ],
      } as never,
    }),
    "00-test",
  );
  assert.deepEqual(spec.linux.devices, [{ path: "/dev/xnull", type: "c", major: 1, minor: 3, fileMode: 0o666 }]);
  assert.deepEqual(spec.linux.resources?.devices, [{ allow: true, type: "c", major: 1, minor: 3, access: "rwm" }]);
  assert.deepEqual(spec.linux.resources?.memory, { limit: 64 << 20, swappiness: 0 });
  assert.deepEqual(spec.linux.resources?.cpu, { shares: 512, quota: 50000, period: 100000, cpus: "0" });
  assert.deepEqual(spec.linux.resources?.hugepageLimits, [{ pageSize: "2MB", limit: 0 }]);
  assert.deepEqual(spec.linux.resources?.unified, { "memory.high": "max" });
  assert.deepEqual(spec.linux.resources?.pids, { limit: 64 });
  assert.equal(spec.linux.cgroupsPath, "/custom/path");
  assert.equal(spec.process.oomScoreAdj, 500);
  assert.deepEqual(spec.linux.sysctl, { "net.ipv4.ip_forward": "1" });
  assert.deepEqual(spec.linux.namespaces, [{ type: "pid" }, { type: "network", path: "/var/run/netns/x" }]);
});

test("what berth cannot apply is refused by name, not dropped", () => {
  const cases: [string, Partial<ContainerAdjustment>][] = [
    ["linux.io_priority", { linux: { ioPriority: { class: 1, priority: 0 } } as never }],
    ["linux.seccomp_policy", { linux: { seccompPolicy: { defaultAction: "SCMP_ACT_ALLOW" } } as never }],
    ["linux.scheduler", { linux: { scheduler: { policy: 1 } } as never }],
    ["linux.net_devices", { linux: { netDevices: { eth1: { name: "net1" } } } as never }],
    ["linux.resources.blockio_class", { linux: { resources: { blockioClass: { value: "slow" } } } as never }],
    [
      "linux.resources.cpu.realtime_runtime",
      { linux: { resources: { cpu: { realtimeRuntime: { value: 1n } } } } as never },
    ],
  ];
  for (const [field, a] of cases) {
    assert.throws(
      () => applyAdjustment(baseSpec(), adjust(a), "00-test"),
      (err: unknown) =>
        err instanceof UnimplementedError && err.message.includes(field) && err.message.includes("00-test"),
      field,
    );
  }
  assert.throws(
    () => applyAdjustment(baseSpec(), adjust({ env: [{ key: "A=B", value: "" }] }), "00-test"),
    InvalidArgumentError,
  );
  assert.throws(
    () =>
      applyAdjustment(
        baseSpec(),
        adjust({ mounts: [{ destination: "rel", type: "", source: "", options: [] }] }),
        "00-test",
      ),
    InvalidArgumentError,
  );
});

test("the next plugin sees the spec as adjusted so far", () => {
  const spec = baseSpec();
  applyAdjustment(spec, adjust({ env: [{ key: "FROM_FIRST", value: "1" }], annotations: { a: "b" } }), "00-first");
  const base = containerFromSpec(
    {
      id: "c",
      podSandboxId: "p",
      name: "n",
      state: 0,
      labels: {},
      annotations: {},
      args: [],
      env: [],
      mounts: [],
      hooks: undefined,
      linux: undefined,
      pid: 0,
      rlimits: [],
      createdAt: 0n,
      startedAt: 0n,
      finishedAt: 0n,
      exitCode: 0,
      statusReason: "",
      statusMessage: "",
      CDIDevices: [],
      user: undefined,
      image: undefined,
    },
    spec,
  );
  assert.ok(base.env.includes("FROM_FIRST=1"));
  assert.equal(base.annotations.a, "b");
  assert.equal(base.linux?.resources?.memory?.limit?.value, 1n << 20n);
  assert.deepEqual(base.args, ["/pause"]);
});

test("merged adjustments (what a validator sees) equal the parts applied in turn", () => {
  const first = adjust({
    annotations: { a: "1" },
    env: [{ key: "X", value: "1" }],
    linux: { resources: { memory: { limit: { value: 100n } } } } as never,
  });
  const second = adjust({
    annotations: { b: "2" },
    env: [{ key: "-DROP", value: "" }],
    mounts: [{ destination: "/m", type: "bind", source: "/s", options: ["ro"] }],
    linux: { resources: { cpu: { shares: { value: 7n } } }, oomScoreAdj: { value: 3n } } as never,
  });
  const inTurn = baseSpec();
  applyAdjustment(inTurn, first, "00-a");
  applyAdjustment(inTurn, second, "01-b");
  const merged = mergeAdjustments([first, second]);
  assert.deepEqual(merged.annotations, { a: "1", b: "2" });
  assert.deepEqual(merged.linux?.resources?.memory?.limit, { value: 100n });
  assert.deepEqual(merged.linux?.resources?.cpu?.shares, { value: 7n });
  const atOnce = baseSpec();
  applyAdjustment(atOnce, merged, "merged");
  assert.deepEqual(atOnce, inTurn);
});
