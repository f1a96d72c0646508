// The runtime manager's pieces that need no shim: runtime handlers (shim binaries, runtime types,
// options, the start/bootstrap protocol) and the shim record store. The manager against real
// shims is in runtime-shims.test.ts.
import { mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { TaskExit } from "../../src/gen/containerd/events/task.js";
import { BootstrapParams, BootstrapResult, LogLevel } from "../../src/gen/containerd/runtime/bootstrap/v1/bootstrap.js";
import {
  BERTH_RUNTIME_TYPE,
  FileShimRecordStore,
  RUNC_RUNTIME_TYPE,
  RuntimeClasses,
  bootstrapFromVersionOutput,
  decodeEnvelope,
  encodeBootstrapParams,
  makeRuntimeHandler,
  runcOptionsAny,
  parseStartOutput,
  repoBinDir,
  resolveShimBinary,
  shimBinaryName,
} from "../../src/runtime/index.js";
import { InvalidArgumentError, NotFoundError } from "../../src/util/errors.js";
import { REPO, BERTH_SHIM } from "../helpers/runtime-env.js";

describe("runtime handlers", () => {
  test("a runtime type names its shim binary, found on PATH or in the repo's bin/", () => {
    assert.equal(shimBinaryName("io.containerd.runc.v2"), "containerd-shim-runc-v2");
    assert.equal(shimBinaryName("io.containerd.berth.v2"), "containerd-shim-berth-v2");
    assert.throws(() => shimBinaryName("runc"), InvalidArgumentError);
    assert.equal(resolveShimBinary(RUNC_RUNTIME_TYPE), "/usr/bin/containerd-shim-runc-v2");
    assert.equal(repoBinDir(), join(REPO, "bin"));
    // Not on PATH: found in place in the repository.
    assert.equal(resolveShimBinary(BERTH_RUNTIME_TYPE, { path: "/nonexistent" }), BERTH_SHIM);
    assert.throws(
      () => resolveShimBinary("io.containerd.nosuch.v2"),
      (err: Error) => {
        assert.ok(err instanceof NotFoundError);
        assert.match(err.message, /containerd-shim-nosuch-v2 is not installed/);
        return true;
      },
    );
  });

  test("handlers default sensibly, validate options, and unknown names fail clearly", () => {
    const hs = new RuntimeClasses(
      { runc: {}, gvisor: { binaryName: "runsc", options: { systemd_cgroup: false, NoPivotRoot: true } } },
      "runc",
    );
    const def = hs.get("");
    assert.equal(def.name, "runc");
    assert.equal(def.runtimeType, BERTH_RUNTIME_TYPE);
    assert.equal(def.binaryName, "runc");
    assert.equal(def.restartableShim, true);
    assert.equal(hs.get("gvisor").runcOptions.binaryName, "runsc");
    assert.equal(hs.get("gvisor").runcOptions.noPivotRoot, true);
    assert.throws(
      () => hs.get("kata"),
      (err: Error) => err instanceof NotFoundError && /no runtime handler named "kata"/.test(err.message),
    );
    assert.throws(() => makeRuntimeHandler("x", { options: { bogus: 1 } }), InvalidArgumentError);
    assert.throws(() => makeRuntimeHandler("x", { options: { systemd_cgroup: "yes" } }), InvalidArgumentError);
    assert.throws(() => new RuntimeClasses({ runc: {} }, "missing"), InvalidArgumentError);
  });

  test("start output: plain address, JSON, and the BootstrapResult protobuf; the task API they announce", () => {
    assert.deepEqual(parseStartOutput("unix:///run/containerd/s/abc"), {
      address: "unix:///run/containerd/s/abc",
      taskApi: 2,
    });
    assert.deepEqual(parseStartOutput('{"version":2,"address":"unix:///run/x.sock","protocol":"ttrpc"}\n'), {
      address: "unix:///run/x.sock",
      taskApi: 2,
    });
    // containerd 2.0-2.2 runc shims: JSON announcing task API v3
    assert.deepEqual(parseStartOutput('{"version":3,"address":"unix:///run/y.sock","protocol":"ttrpc"}'), {
      address: "unix:///run/y.sock",
      taskApi: 3,
    });
    // containerd 2.3+ shims: a BootstrapResult protobuf
    const proto = (r: Partial<BootstrapResult>) =>
      Buffer.from(BootstrapResult.encode(BootstrapResult.fromPartial(r)).finish());
    assert.deepEqual(parseStartOutput(proto({ version: 3, address: "unix:///run/z.sock", protocol: "ttrpc" })), {
      address: "unix:///run/z.sock",
      taskApi: 3,
    });
    assert.throws(() => parseStartOutput(proto({ version: 4, address: "unix:///z", protocol: "ttrpc" })), /version 4/);
    assert.throws(() => parseStartOutput(proto({ version: 3, address: "vsock://3:1", protocol: "grpc" })), /grpc/);
    assert.throws(() => parseStartOutput(proto({ version: 3 })), /without an address/);
    assert.throws(() => parseStartOutput(""), InvalidArgumentError);
    assert.throws(
      () => parseStartOutput('{"version":2,"address":"unix:///x","protocol":"grpc"}'),
      InvalidArgumentError,
    );
  });

  test("start input: which shims want BootstrapParams, and what the params carry", () => {
    assert.equal(bootstrapFromVersionOutput("containerd-shim-runc-v2:\n  Version:  2.4.2+unknown\n"), true);
    assert.equal(bootstrapFromVersionOutput("containerd-shim-runc-v2:\n  Version:  v2.3.0\n"), true);
    assert.equal(bootstrapFromVersionOutput("containerd-shim-runc-v2:\n  Version:  2.2.1\n"), false);
    assert.equal(bootstrapFromVersionOutput("containerd-shim-runc-v2:\n  Version:  1.6.20~ds1\n"), false);
    assert.equal(bootstrapFromVersionOutput("containerd-shim-berth-v2:\n  Version:  berth-shim 0.1.0\n"), false);
    assert.equal(bootstrapFromVersionOutput(""), false);

    const options = runcOptionsAny(makeRuntimeHandler("runc", { root: "/run/r" }));
    const p = BootstrapParams.decode(
      encodeBootstrapParams(
        { id: "c1", namespace: "k8s.io", address: "/run/b.sock", ttrpcAddress: "/run/e.sock", publishBinary: "/bin/b" },
        options,
      ),
    );
    assert.equal(p.instanceId, "c1");
    assert.equal(p.namespace, "k8s.io");
    assert.equal(p.containerdGrpcAddress, "/run/b.sock");
    assert.equal(p.containerdTtrpcAddress, "/run/e.sock");
    assert.equal(p.containerdBinary, "/bin/b");
    assert.equal(p.logLevel, LogLevel.LOG_LEVEL_INFO);
    assert.equal(p.socketDir, undefined, "the shim's default socket dir");
    assert.deepEqual(
      p.extensions.map((e) => e.value?.typeUrl),
      ["containerd.runc.v1.Options"],
    );
  });

  test("events: a forwarded TaskExit envelope decodes to a typed exit event", () => {
    const value = Buffer.from(
      TaskExit.encode({
        containerId: "c1",
        id: "c1",
        pid: 42,
        exitStatus: 3,
        exitedAt: { seconds: 1700000000n, nanos: 5_000_000 },
      }).finish(),
    );
    const ev = decodeEnvelope({
      timestamp: { seconds: 1700000001n, nanos: 0 },
      namespace: "k8s.io",
      topic: "/tasks/exit",
      event: { typeUrl: "containerd.events.TaskExit", value },
    });
    assert.equal(ev.type, "exit");
    if (ev.type !== "exit") return;
    assert.equal(ev.containerId, "c1");
    assert.equal(ev.execId, "", "init process: id == container id");
    assert.equal(ev.exitStatus, 3);
    assert.equal(ev.exitedAt.getTime(), 1700000000005);
    assert.equal(ev.namespace, "k8s.io");
    const unknown = decodeEnvelope({
      timestamp: undefined,
      namespace: "n",
      topic: "/x",
      event: { typeUrl: "x.Y", value: Buffer.from([1]) },
    });
    assert.equal(unknown.type, "unknown");
  });
});

describe("file record store", () => {
  test("records are written atomically with mode 0600 and survive a new store", async () => {
    const dir = mkdtempSync("/tmp/berth-rt-records-");
    try {
      const s = new FileShimRecordStore(dir);
      const rec = {
        namespace: "k8s.io",
        id: "c1",
        address: "unix:///run/x",
        handler: "runc",
        runtimeType: RUNC_RUNTIME_TYPE,
        shimBinary: "/usr/bin/containerd-shim-runc-v2",
        bundle: "/run/b/c1",
        sandboxId: "pod1",
        createdAt: new Date().toISOString(),
      };
      await s.put(rec);
      await s.put({ ...rec, id: "c2" });
      assert.equal(statSync(join(dir, "k8s.io", "c1.json")).mode & 0o777, 0o600);
      const again = new FileShimRecordStore(dir);
      assert.deepEqual(await again.get("k8s.io", "c1"), rec);
      assert.deepEqual(
        (await again.list()).map((r) => r.id),
        ["c1", "c2"],
      );
      await again.delete("k8s.io", "c1");
      assert.equal(await again.get("k8s.io", "c1"), undefined);
      assert.deepEqual(readdirSync(join(dir, "k8s.io")), ["c2.json"], "no temporary files left");
      await assert.rejects(s.get("k8s.io", "../etc"), InvalidArgumentError);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// ---- against containerd-shim-runc-v2 -----------------------------------------------------
