// berth's shim and the bootstrap protocol containerd 2.3+ speaks on `start`: BootstrapParams
// (protobuf) on stdin, a BootstrapResult (protobuf) back on stdout; older callers (containerd
// 1.6, berthd) write the runtime options Any or nothing and get the plain address.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";

import { Options } from "../../src/gen/containerd/runc/options/oci.js";
import { BootstrapParams, BootstrapResult, LogLevel } from "../../src/gen/containerd/runtime/bootstrap/v1/bootstrap.js";
import { Any } from "../../src/gen/google/protobuf/any.js";
import { applyBootstrapParams, readBootstrapParams, startAnswer } from "../../src/shim/bootstrap.js";
import { parseFlags } from "../../src/shim/flags.js";
import { makeBundle } from "../helpers/bundle.js";
import { SHIM_BIN, ShimHarness, until } from "../helpers/shim.js";

const flags = parseFlags(["-namespace", "k8s.io", "-address", "/run/c.sock", "-id", "task1", "start"]);

const runcOptions: Any = {
  typeUrl: "containerd.runc.v1.Options",
  value: Buffer.from(Options.encode(Options.fromPartial({ binaryName: "runc", root: "/run/r" })).finish()),
};

function params(over: Partial<BootstrapParams> = {}): BootstrapParams {
  return BootstrapParams.fromPartial({
    instanceId: "task1",
    namespace: "k8s.io",
    logLevel: LogLevel.LOG_LEVEL_DEBUG,
    containerdVersion: "2.4.2",
    containerdTtrpcAddress: "/run/c.sock.ttrpc",
    containerdGrpcAddress: "/run/c.sock",
    containerdBinary: "/usr/bin/containerd",
    extensions: [{ value: runcOptions }],
    socketDir: "/run/containerd/s",
    ...over,
  });
}

const encode = (p: BootstrapParams) => Buffer.from(BootstrapParams.encode(p).finish());

test("BootstrapParams naming this task and namespace are read; anything else is an older caller", () => {
  const got = readBootstrapParams(encode(params()), flags);
  assert.equal(got?.containerdTtrpcAddress, "/run/c.sock.ttrpc");
  assert.equal(got?.extensions[0]?.value?.typeUrl, "containerd.runc.v1.Options");
  assert.equal(got?.socketDir, "/run/containerd/s");

  assert.equal(readBootstrapParams(Buffer.alloc(0), flags), undefined, "no stdin (containerd 1.6 without options)");
  // containerd 1.6 / berthd write the options Any; it decodes as BootstrapParams too, naming no task
  assert.equal(readBootstrapParams(Buffer.from(Any.encode(runcOptions).finish()), flags), undefined);
  assert.equal(readBootstrapParams(encode(params({ instanceId: "other" })), flags), undefined);
  assert.equal(readBootstrapParams(encode(params({ namespace: "default" })), flags), undefined);
  assert.equal(readBootstrapParams(Buffer.from([0xff, 0xff, 0xff]), flags), undefined, "garbage");
});

test("the params' events address becomes the serving shim's TTRPC_ADDRESS; -address falls back to them", () => {
  const env = { TTRPC_ADDRESS: "/from/env", PATH: "/bin" };
  assert.deepEqual(applyBootstrapParams(flags, env, undefined), { flags, env });
  const applied = applyBootstrapParams(flags, env, params());
  assert.equal(applied.env.TTRPC_ADDRESS, "/run/c.sock.ttrpc");
  assert.equal(applied.env.PATH, "/bin");
  assert.equal(env.TTRPC_ADDRESS, "/from/env", "the given env is not changed");
  assert.equal(applied.flags.address, "/run/c.sock");
  const noFlag = applyBootstrapParams({ ...flags, address: "" }, env, params({ containerdGrpcAddress: "/g.sock" }));
  assert.equal(noFlag.flags.address, "/g.sock");
});

test("start answers a bootstrap caller with a BootstrapResult (task API 2, ttrpc) and others with the address", () => {
  assert.equal(startAnswer("unix:///run/s.sock", undefined).toString(), "unix:///run/s.sock");
  const r = BootstrapResult.decode(startAnswer("unix:///run/s.sock", params()));
  assert.equal(r.version, 2);
  assert.equal(r.address, "unix:///run/s.sock");
  assert.equal(r.protocol, "ttrpc");
});

let h: ShimHarness | undefined;
after(async () => {
  await h?.cleanup();
});

test("the shim binary: bootstrap start serves tasks and publishes events where the params say", async () => {
  h = await ShimHarness.create("berth-bootstrap");
  const bundle = join(h.root, "b1");
  makeBundle(bundle, { args: ["true"] });
  const p = params({
    instanceId: "b1",
    namespace: h.namespace,
    containerdGrpcAddress: h.address,
    containerdTtrpcAddress: h.eventsSock,
    socketDir: join(h.root, "unused"),
  });
  // TTRPC_ADDRESS is left out of the environment: only the params tell where events go.
  const env = { ...h.env, TTRPC_ADDRESS: undefined };
  const r = spawnSync(SHIM_BIN, ["-namespace", h.namespace, "-address", h.address, "-id", "b1", "start"], {
    cwd: bundle,
    env,
    input: encode(p),
  });
  assert.equal(r.status, 0, r.stderr.toString());
  const result = BootstrapResult.decode(r.stdout);
  assert.equal(result.version, 2);
  assert.equal(result.protocol, "ttrpc");
  assert.match(result.address, /^unix:\/\/\//);

  const { task } = await h.connect(result.address);
  await task.create(
    {
      id: "b1",
      bundle,
      rootfs: [],
      terminal: false,
      stdin: "",
      stdout: "",
      stderr: "",
      checkpoint: "",
      parentCheckpoint: "",
      options: h.options(),
    },
    h.md,
  );
  await task.start({ id: "b1", execId: "" }, h.md);
  assert.equal((await task.wait({ id: "b1", execId: "" }, h.md)).exitStatus, 0);
  await task.delete({ id: "b1", execId: "" }, h.md);
  await until(() => h!.topics("b1").includes("/tasks/delete"), "the delete event at the params' address");
  assert.deepEqual(h.topics("b1"), ["/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"]);

  // A second start of the same group, the old way: the same shim, its address as text.
  const bundle2 = join(h.root, "b2");
  makeBundle(bundle2, { args: ["true"] });
  const legacy = spawnSync(SHIM_BIN, ["-namespace", h.namespace, "-address", h.address, "-id", "b2", "start"], {
    cwd: bundle2,
    env: h.env,
    input: Buffer.from(Any.encode(runcOptions).finish()),
    encoding: "utf8",
  });
  assert.equal(legacy.status, 0, legacy.stderr);
  assert.equal(legacy.stdout, result.address);
});
