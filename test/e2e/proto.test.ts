// Wire identity of the generated protobuf code (src/gen) with the upstream definitions.
// Bytes we encode are decoded by protoc's schema-less `--decode_raw`, so the field numbers and
// values checked here do not depend on our own .proto files; the numbers asserted are the ones
// in the upstream files (kubernetes/cri-api, containerd, containerd/cgroups). Service and method
// paths are what kubelet, crictl and containerd put on the wire.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, mkdirSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as cri from "../../src/gen/cri/runtime/v1/api.js";
import * as shim from "../../src/gen/containerd/runtime/v2/task/shim.js";
import * as events from "../../src/gen/containerd/events/task.js";
import * as ttrpcEvents from "../../src/gen/containerd/services/ttrpc/events/v1/events.js";
import * as runcOptions from "../../src/gen/containerd/runc/options/oci.js";
import * as cgroupsV1 from "../../src/gen/cgroups/stats/v1/metrics.js";
import { Status as TaskStatus } from "../../src/gen/containerd/types/task/task.js";
import { all, decodeRaw, num, str, strMap, sub, subs } from "../helpers/proto-raw.js";

// ---- (a) messages on the wire ----

test("CRI VersionRequest/VersionResponse field numbers", () => {
  const req = decodeRaw(cri.VersionRequest.encode({ version: "v1" }).finish());
  assert.deepEqual(req, [{ n: 1, v: "v1" }]);

  const resp = cri.VersionResponse.fromPartial({
    version: "v0.1.0",
    runtimeName: "berth",
    runtimeVersion: "v0.1.0-dev",
    runtimeApiVersion: "v1",
  });
  const raw = decodeRaw(cri.VersionResponse.encode(resp).finish());
  assert.equal(str(raw, 1), "v0.1.0");
  assert.equal(str(raw, 2), "berth");
  assert.equal(str(raw, 3), "v0.1.0-dev");
  assert.equal(str(raw, 4), "v1");
});

test("CRI PodSandboxConfig: metadata, labels map, port mappings, linux namespaces", () => {
  const config = cri.PodSandboxConfig.fromPartial({
    metadata: { name: "nginx", uid: "f00d-1", namespace: "default", attempt: 2 },
    hostname: "web-0",
    logDirectory: "/var/log/pods/default_nginx_f00d-1",
    dnsConfig: { servers: ["10.96.0.10"], searches: ["default.svc.cluster.local"], options: ["ndots:5"] },
    portMappings: [
      { protocol: cri.Protocol.TCP, containerPort: 80, hostPort: 8080, hostIp: "::1" },
      { protocol: cri.Protocol.UDP, containerPort: 53, hostPort: 5353, hostIp: "" },
    ],
    labels: { app: "nginx", tier: "web" },
    annotations: { note: "one" },
    linux: {
      cgroupParent: "/kubepods/pod-f00d-1",
      securityContext: { namespaceOptions: { network: cri.NamespaceMode.NODE, pid: cri.NamespaceMode.CONTAINER } },
      sysctls: { "net.ipv4.ip_forward": "1" },
    },
  });
  const bytes = cri.PodSandboxConfig.encode(config).finish();
  const raw = decodeRaw(bytes);

  const md = sub(raw, 1);
  assert.equal(str(md, 1), "nginx");
  assert.equal(str(md, 2), "f00d-1");
  assert.equal(str(md, 3), "default");
  assert.equal(num(md, 4), 2n);
  assert.equal(str(raw, 2), "web-0");
  assert.equal(str(raw, 3), "/var/log/pods/default_nginx_f00d-1");
  const dns = sub(raw, 4);
  assert.deepEqual([str(dns, 1), str(dns, 2), str(dns, 3)], ["10.96.0.10", "default.svc.cluster.local", "ndots:5"]);

  const ports = subs(raw, 5);
  assert.equal(ports.length, 2);
  // TCP is the zero value, so proto3 leaves field 1 out.
  assert.deepEqual(all(ports[0]!, 1), []);
  assert.equal(num(ports[0]!, 2), 80n);
  assert.equal(num(ports[0]!, 3), 8080n);
  assert.equal(str(ports[0]!, 4), "::1");
  assert.equal(num(ports[1]!, 1), 1n); // UDP
  assert.equal(num(ports[1]!, 2), 53n);
  assert.equal(num(ports[1]!, 3), 5353n);

  assert.deepEqual(strMap(raw, 6), { app: "nginx", tier: "web" });
  assert.deepEqual(strMap(raw, 7), { note: "one" });

  const linux = sub(raw, 8);
  assert.equal(str(linux, 1), "/kubepods/pod-f00d-1");
  const ns = sub(sub(linux, 2), 1); // security_context(2).namespace_options(1)
  assert.equal(num(ns, 1), 2n); // network = NODE
  assert.equal(num(ns, 2), 1n); // pid = CONTAINER
  assert.deepEqual(strMap(linux, 3), { "net.ipv4.ip_forward": "1" });

  // And back: our decoder reads what it wrote.
  assert.deepEqual(cri.PodSandboxConfig.decode(bytes), config);
});

test("CRI ContainerStatus: int64 nanosecond times and a negative int32 exit code", () => {
  const status = cri.ContainerStatus.fromPartial({
    id: "f1e2",
    metadata: { name: "nginx", attempt: 1 },
    state: cri.ContainerState.CONTAINER_EXITED,
    createdAt: 1_700_000_000_123_456_789n,
    exitCode: -1,
    image: { image: "docker.io/library/nginx:latest" },
    logPath: "nginx/1.log",
  });
  const raw = decodeRaw(cri.ContainerStatus.encode(status).finish());
  assert.equal(str(raw, 1), "f1e2");
  assert.equal(str(sub(raw, 2), 1), "nginx");
  assert.equal(num(sub(raw, 2), 2), 1n);
  assert.equal(num(raw, 3), 2n);
  assert.equal(num(raw, 4), 1_700_000_000_123_456_789n);
  // int32 -1 is sign-extended to a 10-byte varint, exactly as Go writes it.
  assert.equal(num(raw, 7), 2n ** 64n - 1n);
  assert.equal(str(sub(raw, 8), 1), "docker.io/library/nginx:latest");
  assert.equal(str(raw, 15), "nginx/1.log");
});

test("CRI PullImageRequest: image spec, auth and sandbox config", () => {
  const req = cri.PullImageRequest.fromPartial({
    image: { image: "localhost:5000/busybox:1" },
    auth: { username: "demo", password: "s3cret", serverAddress: "localhost:5000" },
    sandboxConfig: { metadata: { name: "nginx" } },
  });
  const raw = decodeRaw(cri.PullImageRequest.encode(req).finish());
  assert.equal(str(sub(raw, 1), 1), "localhost:5000/busybox:1");
  const auth = sub(raw, 2);
  assert.equal(str(auth, 1), "demo");
  assert.equal(str(auth, 2), "s3cret");
  assert.equal(str(auth, 4), "localhost:5000");
  assert.equal(str(sub(sub(raw, 3), 1), 1), "nginx");
});

test("shim CreateTaskRequest: rootfs mounts and runc options in an Any", () => {
  const options = runcOptions.Options.encode(
    runcOptions.Options.fromPartial({ binaryName: "runc", root: "/run/berth/runc", systemdCgroup: true }),
  ).finish();
  const req = shim.CreateTaskRequest.fromPartial({
    id: "nginx-1",
    bundle: "/run/berth/bundles/nginx-1",
    rootfs: [
      { type: "overlay", source: "overlay", target: "", options: ["lowerdir=/l1:/l2", "upperdir=/u", "workdir=/w"] },
    ],
    terminal: true,
    stdin: "",
    stdout: "/run/berth/fifo/nginx-1-stdout",
    stderr: "/run/berth/fifo/nginx-1-stderr",
    options: { typeUrl: "containerd.runc.v1.Options", value: Buffer.from(options) },
  });
  const raw = decodeRaw(shim.CreateTaskRequest.encode(req).finish());
  assert.equal(str(raw, 1), "nginx-1");
  assert.equal(str(raw, 2), "/run/berth/bundles/nginx-1");
  const mounts = subs(raw, 3);
  assert.equal(mounts.length, 1);
  assert.equal(str(mounts[0]!, 1), "overlay");
  assert.equal(str(mounts[0]!, 2), "overlay");
  assert.deepEqual(all(mounts[0]!, 3), []); // empty target is not sent
  assert.deepEqual(all(mounts[0]!, 4), ["lowerdir=/l1:/l2", "upperdir=/u", "workdir=/w"]);
  assert.equal(num(raw, 4), 1n);
  assert.deepEqual(all(raw, 5), []);
  assert.equal(str(raw, 6), "/run/berth/fifo/nginx-1-stdout");
  assert.equal(str(raw, 7), "/run/berth/fifo/nginx-1-stderr");
  const any = sub(raw, 10);
  assert.equal(str(any, 1), "containerd.runc.v1.Options");
  const opts = sub(any, 2); // the Any's value parses as the runc Options message
  assert.equal(str(opts, 6), "runc"); // binary_name
  assert.equal(str(opts, 7), "/run/berth/runc"); // root
  assert.equal(num(opts, 9), 1n); // systemd_cgroup
});

test("shim StateResponse carries the containerd.v1.types Status enum in field 4", () => {
  const raw = decodeRaw(
    shim.StateResponse.encode(
      shim.StateResponse.fromPartial({
        id: "nginx-1",
        pid: 4242,
        status: TaskStatus.STOPPED,
        exitStatus: 137,
        execId: "exec-1",
      }),
    ).finish(),
  );
  assert.equal(str(raw, 1), "nginx-1");
  assert.equal(num(raw, 3), 4242n);
  assert.equal(num(raw, 4), 3n); // STOPPED
  assert.equal(num(raw, 9), 137n);
  assert.equal(str(raw, 11), "exec-1");
});

test("TaskExit event with Timestamp, forwarded in an Envelope", () => {
  const exitedAt = { seconds: 1_700_000_000n, nanos: 5 };
  const exit = events.TaskExit.fromPartial({
    containerId: "nginx-1",
    id: "nginx-1",
    pid: 4242,
    exitStatus: 137,
    exitedAt,
  });
  const exitBytes = events.TaskExit.encode(exit).finish();
  const raw = decodeRaw(exitBytes);
  assert.equal(str(raw, 1), "nginx-1");
  assert.equal(str(raw, 2), "nginx-1");
  assert.equal(num(raw, 3), 4242n);
  assert.equal(num(raw, 4), 137n);
  const ts = sub(raw, 5);
  assert.equal(num(ts, 1), 1_700_000_000n);
  assert.equal(num(ts, 2), 5n);

  const fwd = ttrpcEvents.ForwardRequest.fromPartial({
    envelope: {
      timestamp: exitedAt,
      namespace: "k8s.io",
      topic: "/tasks/exit",
      event: { typeUrl: "containerd.events.TaskExit", value: Buffer.from(exitBytes) },
    },
  });
  const env = sub(decodeRaw(ttrpcEvents.ForwardRequest.encode(fwd).finish()), 1);
  assert.equal(num(sub(env, 1), 1), 1_700_000_000n);
  assert.equal(str(env, 2), "k8s.io");
  assert.equal(str(env, 3), "/tasks/exit");
  const ev = sub(env, 4);
  assert.equal(str(ev, 1), "containerd.events.TaskExit");
  assert.equal(num(sub(ev, 2), 4), 137n);
});

test("cgroup v1 Metrics: pids and memory usage numbers", () => {
  const m = cgroupsV1.Metrics.fromPartial({
    pids: { current: 3n, limit: 100n },
    memory: { cache: 4096n, usage: { usage: 1_048_576n, limit: 2n ** 63n - 1n } },
  });
  const raw = decodeRaw(cgroupsV1.Metrics.encode(m).finish());
  assert.equal(num(sub(raw, 2), 1), 3n);
  assert.equal(num(sub(raw, 2), 2), 100n);
  const mem = sub(raw, 4);
  assert.equal(num(mem, 1), 4096n);
  const usage = sub(mem, 33);
  assert.equal(num(usage, 1), 2n ** 63n - 1n);
  assert.equal(num(usage, 2), 1_048_576n);
});

test("DeleteResponse printed by containerd's own runc shim decodes with our DeleteResponse", (t) => {
  // `containerd-shim-runc-v2 delete` is the shim v2 cleanup command: it prints a protobuf
  // DeleteResponse on stdout. A bundle that never ran still gets an answer (exit 128+SIGKILL).
  if (spawnSync("containerd-shim-runc-v2", ["-v"]).error) {
    t.skip("containerd-shim-runc-v2 is not installed");
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), "berth-proto-"));
  try {
    const bundle = join(dir, "probe");
    mkdirSync(bundle);
    writeFileSync(join(bundle, "runtime"), "runc");
    // Keep runc's state directory inside our temp dir instead of /run/containerd/runc.
    writeFileSync(join(bundle, "options.json"), JSON.stringify({ root: join(dir, "runc-root") }));
    const before = BigInt(Math.floor(Date.now() / 1000));
    const r = spawnSync(
      "containerd-shim-runc-v2",
      [
        "-namespace",
        "berth-proto-test",
        "-id",
        "probe",
        "-address",
        join(dir, "none.sock"),
        "-publish-binary",
        "/bin/true",
        "-bundle",
        bundle,
        "delete",
      ],
      { cwd: bundle, timeout: 30_000 },
    );
    assert.equal(r.status, 0, `shim delete failed: ${r.stderr}`);
    const resp = shim.DeleteResponse.decode(r.stdout);
    assert.equal(resp.exitStatus, 137);
    assert.ok(resp.exitedAt, "exited_at is set");
    assert.ok(resp.exitedAt.seconds >= before - 1n && resp.exitedAt.seconds <= before + 60n);
    assert.ok(resp.exitedAt.nanos >= 0 && resp.exitedAt.nanos < 1e9);
    // And our encoding of the same response is byte-identical to the shim's.
    assert.deepEqual(Buffer.from(shim.DeleteResponse.encode(resp).finish()), Buffer.from(r.stdout));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
