// End-to-end checks of generated OCI specs with real runc: a busybox-static rootfs, the
// spec from buildContainerSpec/buildSandboxSpec written as config.json, `runc run`, the
// output compared. Each container runs under a private runc --root and is deleted after;
// the netns, cgroups and temp dirs the tests make are removed at the end.

import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  ContainerConfig,
  NamespaceMode,
  PodSandboxConfig,
  SecurityProfile_ProfileType,
} from "../../src/gen/cri/runtime/v1/api.js";
import { buildContainerSpec, buildSandboxSpec, type ImageProcessConfig } from "../../src/cri/spec/index.js";
import { writeSpecFile, type Spec } from "../../src/oci/index.js";
import { DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS } from "../../src/oci/defaults.js";

const CGROUP_PARENT = `/berth-oci-test-${process.pid}`;
const APPLETS = ["sh", "id", "chown", "touch", "cat", "wc", "unshare", "echo", "hostname", "sleep", "true", "tr", "ls"];

let dir: string;
let rootfs: string;
let runcRoot: string;
let seq = 0;

interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

function runc(args: string[], timeoutMs = 30_000): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile("runc", ["--root", runcRoot, ...args], { timeout: timeoutMs }, (err, stdout, stderr) => {
      const code = err
        ? typeof (err as { code?: unknown }).code === "number"
          ? (err as { code: number }).code
          : -1
        : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

function makeBundle(spec: Spec): { id: string; bundle: string } {
  const id = `berth-oci-${process.pid}-${++seq}`;
  const bundle = join(dir, "bundles", id);
  mkdirSync(bundle, { recursive: true });
  writeSpecFile(bundle, spec);
  return { id, bundle };
}

/** Runs a spec to completion with `runc run`; always deletes the container and bundle. */
async function runSpec(spec: Spec): Promise<RunResult> {
  const { id, bundle } = makeBundle(spec);
  try {
    return await runc(["run", "--bundle", bundle, id]);
  } finally {
    await runc(["delete", "-f", id]);
    rmSync(bundle, { recursive: true, force: true });
  }
}

const files = () => ({
  resolvConf: join(dir, "resolv.conf"),
  hosts: join(dir, "hosts"),
  hostname: join(dir, "hostname"),
  shm: join(dir, "shm"),
});

type CtrPartial = Parameters<typeof ContainerConfig.fromPartial>[0];

/** A container of a host-network, host-IPC pod (no sandbox process needed). */
function hostPodSpec(container: CtrPartial, image: ImageProcessConfig = {}, podPrivileged = false): Spec {
  const id = `c-${process.pid}-${seq + 1}`;
  return buildContainerSpec({
    id,
    sandboxId: "sandbox-1",
    container: ContainerConfig.fromPartial({ metadata: { name: "t" }, ...container }),
    sandbox: PodSandboxConfig.fromPartial({
      metadata: { name: "pod", namespace: "default", uid: "u1" },
      hostname: "pod-host",
      linux: {
        cgroupParent: CGROUP_PARENT,
        securityContext: {
          privileged: podPrivileged,
          namespaceOptions: { network: NamespaceMode.NODE, ipc: NamespaceMode.NODE, pid: NamespaceMode.POD },
        },
      },
    }),
    image: { name: "busybox", config: image },
    rootfsPath: rootfs,
    podPaths: { netnsPath: null, ...files() },
  });
}

const sh = (script: string): CtrPartial => ({ command: ["/bin/sh", "-c", script] });
const withSc = (c: CtrPartial, securityContext: object): CtrPartial => ({ ...c, linux: { securityContext } });

before(() => {
  dir = mkdtempSync(join(tmpdir(), "berth-oci-runc-"));
  rootfs = join(dir, "rootfs");
  runcRoot = join(dir, "runc-root");
  for (const d of ["bin", "etc", "tmp", "proc", "dev", "sys", "data"]) mkdirSync(join(rootfs, d), { recursive: true });
  chmodSync(join(rootfs, "tmp"), 0o1777);
  copyFileSync("/bin/busybox", join(rootfs, "bin/busybox"));
  chmodSync(join(rootfs, "bin/busybox"), 0o755);
  for (const a of APPLETS) symlinkSync("busybox", join(rootfs, "bin", a));
  writeFileSync(join(rootfs, "etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nalice:x:1001:1001::/tmp:/bin/sh\n");
  writeFileSync(join(rootfs, "etc/group"), "root:x:0:\nalice:x:1001:\ndevs:x:2000:alice\naudio:x:2001:root,alice\n");
  // The sandbox's process; berth's real one is a static pause binary.
  writeFileSync(join(rootfs, "pause"), "#!/bin/sh\nexec sleep 600\n", { mode: 0o755 });
  mkdirSync(runcRoot);
  mkdirSync(join(dir, "shm"));
  writeFileSync(join(dir, "resolv.conf"), "nameserver 10.0.0.10\nsearch svc.cluster.local\n");
  writeFileSync(join(dir, "hosts"), "127.0.0.1 localhost\n10.1.1.1 pod-host\n");
  writeFileSync(join(dir, "hostname"), "pod-host\n");
});

after(() => {
  // runc removes each container's cgroup; the test's parent cgroup is ours to remove.
  for (const ctrl of readdirSync("/sys/fs/cgroup")) {
    const p = join("/sys/fs/cgroup", ctrl, CGROUP_PARENT);
    if (existsSync(p)) {
      try {
        rmdirSync(p);
      } catch {
        /* not empty: a leak the assertion below reports */
      }
    }
  }
  rmSync(dir, { recursive: true, force: true });
  const left = readdirSync("/sys/fs/cgroup").filter((c) => existsSync(join("/sys/fs/cgroup", c, CGROUP_PARENT)));
  assert.deepEqual(left, [], "test cgroups left behind");
});

describe("runc runs the generated container spec", () => {
  test("args, env, cwd and the pod's files", async () => {
    const r = await runSpec(
      hostPodSpec(
        {
          args: ["-c", 'echo "$GREETING $HOSTNAME $(pwd)"; cat /etc/hostname /etc/resolv.conf'],
          envs: [{ key: "GREETING", value: Buffer.from("hi") }],
        },
        { Entrypoint: ["/bin/sh"], Cmd: ["-c", "echo image-cmd"], WorkingDir: "/tmp", Env: ["GREETING=image"] },
      ),
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "hi pod-host /tmp\npod-host\nnameserver 10.0.0.10\nsearch svc.cluster.local\n");
  });

  test("runtime-default seccomp blocks unshare (EPERM); unconfined allows it", async () => {
    const blocked = await runSpec(
      hostPodSpec(
        withSc(
          { command: ["unshare", "-U", "true"] },
          { seccomp: { profileType: SecurityProfile_ProfileType.RuntimeDefault } },
        ),
      ),
    );
    assert.notEqual(blocked.code, 0);
    assert.match(blocked.stderr, /Operation not permitted/);
    const allowed = await runSpec(
      hostPodSpec(
        withSc(
          { command: ["unshare", "-U", "true"] },
          { seccomp: { profileType: SecurityProfile_ProfileType.Unconfined } },
        ),
      ),
    );
    assert.equal(allowed.code, 0, allowed.stderr);
    // Ordinary work (fork, exec, files) is unaffected by the default profile.
    const normal = await runSpec(
      hostPodSpec(withSc(sh("touch /tmp/s && ls /tmp/s && echo ok"), { seccompProfilePath: "runtime/default" })),
    );
    assert.equal(normal.code, 0, normal.stderr);
    assert.match(normal.stdout, /ok\n$/);
  });

  test("dropping CAP_CHOWN makes chown fail; the default set allows it", async () => {
    const script = "f=/tmp/chown-$$; touch $f && chown 1 $f";
    const ok = await runSpec(hostPodSpec(sh(script)));
    assert.equal(ok.code, 0, ok.stderr);
    const denied = await runSpec(hostPodSpec(withSc(sh(script), { capabilities: { dropCapabilities: ["CHOWN"] } })));
    assert.notEqual(denied.code, 0);
    assert.match(denied.stderr, /Operation not permitted/);
  });

  test("a read-only rootfs refuses writes (pod files stay readable)", async () => {
    const r = await runSpec(hostPodSpec(withSc(sh("cat /etc/hostname; touch /x"), { readonlyRootfs: true })));
    assert.notEqual(r.code, 0);
    assert.equal(r.stdout, "pod-host\n");
    assert.match(r.stderr, /Read-only file system/);
  });

  test("RunAsUser 1000 runs as uid 1000", async () => {
    const r = await runSpec(hostPodSpec(withSc({ command: ["id", "-u"] }, { runAsUser: { value: 1000n } })));
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), "1000");
  });

  test("the image's USER by name gets its uid, gid and /etc/group memberships", async () => {
    const r = await runSpec(hostPodSpec({ command: ["sh", "-c", "id -u; id -g; id -G"] }, { User: "alice" }));
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split("\n"), ["1001", "1001", "1001 2000 2001"]);
  });

  // kubelet sends these lists for every container (procMount: Default); berth uses what it is given.
  const kubeletLists = { maskedPaths: [...DEFAULT_MASKED_PATHS], readonlyPaths: [...DEFAULT_READONLY_PATHS] };

  test("masked paths hide /proc/timer_list; a custom list replaces the default; no list hides nothing", async () => {
    const script = "wc -c < /proc/timer_list";
    const masked = await runSpec(hostPodSpec(withSc(sh(script), kubeletLists)));
    assert.equal(masked.code, 0, masked.stderr);
    assert.equal(masked.stdout.trim(), "0");
    const custom = await runSpec(hostPodSpec(withSc(sh(script), { maskedPaths: ["/proc/acpi"] })));
    assert.equal(custom.code, 0, custom.stderr);
    assert.ok(Number(custom.stdout.trim()) > 0, custom.stdout);
    const none = await runSpec(hostPodSpec(sh(script)));
    assert.equal(none.code, 0, none.stderr);
    assert.ok(Number(none.stdout.trim()) > 0, none.stdout);
  });

  test("readonly paths: /proc/sys and /sys refuse writes", async () => {
    const r = await runSpec(
      hostPodSpec(withSc(sh("echo 1 > /proc/sys/kernel/ns_last_pid; echo 1 > /sys/kernel/profiling"), kubeletLists)),
    );
    assert.equal(r.stderr.match(/Read-only file system/g)?.length, 2, r.stderr);
  });

  test("a bind mount (read-only) from a symlinked host path", async () => {
    const target = join(dir, "vol");
    mkdirSync(target, { recursive: true });
    writeFileSync(join(target, "file"), "from-host\n");
    const link = join(dir, "vol-link");
    if (!existsSync(link)) symlinkSync(target, link);
    const r = await runSpec(
      hostPodSpec({
        ...sh("cat /data/file; touch /data/new"),
        mounts: [{ containerPath: "/data", hostPath: link, readonly: true }],
      }),
    );
    assert.equal(r.stdout, "from-host\n");
    assert.match(r.stderr, /Read-only file system/);
  });
});

describe("runc runs the sandbox and a container joins its namespaces", () => {
  const netns = `berth-oci-${process.pid}`;
  let sandboxId = "";
  before(() => {
    const r = spawnSync("ip", ["netns", "add", netns]);
    assert.equal(r.status, 0, String(r.stderr));
  });
  after(async () => {
    if (sandboxId) await runc(["delete", "-f", sandboxId]);
    spawnSync("ip", ["netns", "delete", netns]);
  });

  test("pod hostname, network namespace and shared PID namespace", async () => {
    const pod = PodSandboxConfig.fromPartial({
      metadata: { name: "pod", namespace: "default", uid: "u2" },
      hostname: "sandboxed",
      linux: { cgroupParent: CGROUP_PARENT, sysctls: { "net.ipv4.ip_unprivileged_port_start": "0" } },
    });
    const sspec = buildSandboxSpec({
      id: `sb-${process.pid}`,
      config: pod,
      rootfsPath: rootfs,
      netnsPath: `/var/run/netns/${netns}`,
      files: files(),
    });
    const { id, bundle } = makeBundle(sspec);
    sandboxId = id;
    // -d: runc returns once the pause process runs; its stdio goes nowhere.
    const started = spawnSync("runc", ["--root", runcRoot, "run", "-d", "--bundle", bundle, id], {
      stdio: "ignore",
      timeout: 30_000,
    });
    assert.equal(started.status, 0, "sandbox did not start");
    const state = JSON.parse((await runc(["state", id])).stdout) as { pid: number; status: string };
    assert.equal(state.status, "running");
    const ns = (t: string) => `/proc/${state.pid}/ns/${t}`;

    const spec = buildContainerSpec({
      id: `c-${process.pid}-sb`,
      sandboxId: id,
      container: ContainerConfig.fromPartial({
        metadata: { name: "app" },
        command: [
          "sh",
          "-c",
          "hostname; tr '\\0' ' ' < /proc/1/cmdline; echo; cat /proc/sys/net/ipv4/ip_unprivileged_port_start; id -u",
        ],
        linux: { securityContext: { namespaceOptions: { pid: NamespaceMode.POD } } },
      }),
      sandbox: pod,
      image: { config: {} },
      rootfsPath: rootfs,
      podPaths: {
        netnsPath: `/var/run/netns/${netns}`,
        ipcPath: ns("ipc"),
        utsPath: ns("uts"),
        pidNamespacePath: ns("pid"),
        ...files(),
      },
    });
    const r = await runSpec(spec);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(
      r.stdout
        .trim()
        .split("\n")
        .map((l) => l.trim()),
      ["sandboxed", "sleep 600", "0", "0"],
    );
    // The pause process itself runs unprivileged.
    const status = (await import("node:fs")).readFileSync(`/proc/${state.pid}/status`, "utf8");
    assert.match(status, /^Uid:\s+65535\s/m);
    assert.match(status, /^CapEff:\s+0+$/m);
    assert.match(status, /^NoNewPrivs:\s+1$/m);
  });
});
