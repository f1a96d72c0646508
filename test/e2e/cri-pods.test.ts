// Pods and containers through berthd's CRI socket, as kubelet drives them: real runc, real
// CNI plugins on a private bridge, images pulled from a real registry.
import assert from "node:assert/strict";
import { existsSync, readFileSync, readlinkSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { hostname, networkInterfaces } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { status as grpcStatus } from "@grpc/grpc-js";
import { ContainerState, PodSandboxState } from "../../src/gen/cri/runtime/v1/api.js";
import { DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS } from "../../src/oci/defaults.js";
import { until, type CriEnv } from "../helpers/cri.js";
import { useCriEnv } from "../helpers/cri-fixture.js";

let env: CriEnv;

useCriEnv({ bridge: "berthcri0", subnet: "10.234.0.0/24", pull: ["busybox", "busyboxUser"] }, (e) => (env = e));

function code(err: unknown): number {
  return (err as { code: number }).code;
}

describe("pod and container lifecycle", () => {
  test("a pod runs, a container in it logs, exits with its code, and everything goes away", async () => {
    const pod = await env.runPod("life", { labels: { app: "life", tier: "test" } });
    const other = await env.runPod("life-other", { labels: { app: "other" } });
    const byLabel = await env.d.rt.listPodSandbox({ filter: { labelSelector: { app: "life" } } });
    assert.deepEqual(
      byLabel.items.map((p) => p.id),
      [pod.id],
    );
    assert.deepEqual(
      (await env.d.rt.listPodSandbox({ filter: { id: other.id.slice(0, 10) } })).items.map((p) => p.id),
      [other.id],
    );
    await env.d.rt.stopPodSandbox({ podSandboxId: other.id });
    const notReady = await env.d.rt.listPodSandbox({ filter: { state: { state: PodSandboxState.SANDBOX_NOTREADY } } });
    assert.deepEqual(
      notReady.items.map((p) => p.id),
      [other.id],
    );
    await env.d.rt.removePodSandbox({ podSandboxId: other.id });
    const st = await env.d.rt.podSandboxStatus({ podSandboxId: pod.id, verbose: true });
    assert.equal(st.status?.state, PodSandboxState.SANDBOX_READY);
    assert.match(st.status?.network?.ip ?? "", /^10\.234\.0\.\d+$/);
    assert.equal(st.status?.metadata?.name, "life");
    assert.ok(JSON.parse(st.info.info!).pid > 0);

    // short ids resolve
    const short = await env.d.rt.podSandboxStatus({ podSandboxId: pod.id.slice(0, 12) });
    assert.equal(short.status?.id, pod.id);

    const cid = await env.runContainer(pod, "echo", ["sh", "-c", "echo out; echo err >&2; exit 3"]);
    await until(
      async () =>
        (await env.d.rt.containerStatus({ containerId: cid })).status?.state === ContainerState.CONTAINER_EXITED,
      "container exit",
    );
    const cs = (await env.d.rt.containerStatus({ containerId: cid })).status!;
    assert.equal(cs.exitCode, 3);
    assert.equal(cs.reason, "Error");
    assert.ok(cs.startedAt > 0n && cs.finishedAt >= cs.startedAt, `started ${cs.startedAt} finished ${cs.finishedAt}`);
    assert.equal(cs.logPath, join(env.logDir, "life", "echo.log"));
    const log = readFileSync(cs.logPath, "utf8");
    assert.match(log, /^\S+ stdout F out$/m);
    assert.match(log, /^\S+ stderr F err$/m);

    const list = await env.d.rt.listContainers({ filter: { podSandboxId: pod.id } });
    assert.deepEqual(
      list.containers.map((c) => c.id),
      [cid],
    );

    await env.d.rt.stopPodSandbox({ podSandboxId: pod.id });
    await env.d.rt.stopPodSandbox({ podSandboxId: pod.id }); // idempotent
    const stopped = await env.d.rt.podSandboxStatus({ podSandboxId: pod.id });
    assert.equal(stopped.status?.state, PodSandboxState.SANDBOX_NOTREADY);
    await env.d.rt.removePodSandbox({ podSandboxId: pod.id });
    await env.d.rt.removePodSandbox({ podSandboxId: pod.id }); // already removed: OK
    // stopping what is gone is no error either (CRI: idempotent; critest's Idempotence specs)
    await env.d.rt.stopPodSandbox({ podSandboxId: pod.id });
    await env.d.rt.stopContainer({ containerId: cid, timeout: 0n });
    await assert.rejects(env.d.rt.containerStatus({ containerId: cid }), (e) => code(e) === grpcStatus.NOT_FOUND);
    assert.deepEqual(env.leftovers(), []);
  });

  test("a running container is stopped with the image's stop signal, exec works in it, and it is removed", async () => {
    const pod = await env.runPod("runner");
    const cid = await env.runContainer(
      pod,
      "trapper",
      ["sh", "-c", 'trap "echo got USR1; exit 5" USR1; echo ready; while true; do sleep 0.2; done'],
      {
        image: { image: env.images.busyboxUser },
      },
    );
    assert.equal(
      (await env.d.rt.containerStatus({ containerId: cid })).status?.state,
      ContainerState.CONTAINER_RUNNING,
    );
    const r = await env.d.rt.execSync({
      containerId: cid,
      cmd: ["sh", "-c", "echo hi; echo oops >&2; exit 7"],
      timeout: 10n,
    });
    assert.equal(r.stdout.toString(), "hi\n");
    assert.equal(r.stderr.toString(), "oops\n");
    assert.equal(r.exitCode, 7);
    await env.d.rt.stopContainer({ containerId: cid, timeout: 20n });
    const cs = (await env.d.rt.containerStatus({ containerId: cid })).status!;
    assert.equal(cs.state, ContainerState.CONTAINER_EXITED);
    assert.equal(cs.exitCode, 5, "the image's STOPSIGNAL (SIGUSR1) was sent first");
    assert.match(readFileSync(cs.logPath, "utf8"), /stdout F got USR1/);
    await env.d.rt.stopContainer({ containerId: cid, timeout: 10n }); // idempotent

    // pid 1 ignores SIGTERM without a handler: SIGKILL follows after the timeout.
    const stubborn = await env.runContainer(pod, "stubborn", ["sleep", "1000"]);
    await env.d.rt.stopContainer({ containerId: stubborn, timeout: 1n });
    const ss = (await env.d.rt.containerStatus({ containerId: stubborn })).status!;
    assert.equal(ss.exitCode, 137);
    assert.equal(ss.reason, "Error");

    await env.d.rt.removeContainer({ containerId: cid });
    await env.d.rt.removeContainer({ containerId: cid });
    // removing a running container stops it first
    const running = await env.runContainer(pod, "running", ["sleep", "1000"]);
    await env.d.rt.removeContainer({ containerId: running });
    await assert.rejects(env.d.rt.containerStatus({ containerId: running }), (e) => code(e) === grpcStatus.NOT_FOUND);
    await env.d.rt.removePodSandbox({ podSandboxId: pod.id });
  });
});

function hostIp(): string {
  for (const [name, addrs] of Object.entries(networkInterfaces())) {
    if (name.startsWith("berth") || name.startsWith("cni") || name.startsWith("veth")) continue;
    for (const a of addrs ?? []) if (a.family === "IPv4" && !a.internal) return a.address;
  }
  throw new Error("no host IPv4 address");
}

function httpGet(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { timeout: 3000 }, (res) => {
      let body = "";
      res.on("data", (c: Buffer) => (body += c.toString()));
      res.on("end", () => resolve(body));
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
    req.end();
  });
}

describe("pod networking and pod files", () => {
  test("two pods reach each other by pod IP", async () => {
    const a = await env.runPod("net-a");
    const b = await env.runPod("net-b");
    await env.runContainer(a, "web", ["httpd", "-f", "-p", "80", "-h", "/www"]);
    const client = await env.runContainer(b, "client", ["sleep", "1000"]);
    const ipA = (await env.d.rt.podSandboxStatus({ podSandboxId: a.id })).status!.network!.ip;
    const ipB = (await env.d.rt.podSandboxStatus({ podSandboxId: b.id })).status!.network!.ip;
    assert.notEqual(ipA, ipB);
    const body = await until(async () => {
      // busybox-static's wget crashes (static glibc resolver); nc speaks HTTP just as well.
      const r = await env.d.rt.execSync({
        containerId: client,
        cmd: ["sh", "-c", `printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 3 ${ipA} 80`],
        timeout: 10n,
      });
      const text = r.stdout.toString();
      return r.exitCode === 0 && text.includes("\r\n\r\n") ? text.slice(text.indexOf("\r\n\r\n") + 4) : undefined;
    }, "pod-to-pod HTTP");
    assert.equal(body, "hello from berth\n");
    await env.d.rt.removePodSandbox({ podSandboxId: a.id });
    await env.d.rt.removePodSandbox({ podSandboxId: b.id });
  });

  test("a hostPort reaches busybox httpd in a pod", async () => {
    const port = 20000 + Math.floor(Math.random() * 20000);
    const pod = await env.runPod("hostport", { portMappings: [{ protocol: 0, containerPort: 80, hostPort: port }] });
    await env.runContainer(pod, "web", ["httpd", "-f", "-p", "80", "-h", "/www"]);
    const body = await until(
      () => httpGet(`http://${hostIp()}:${port}/index.html`).catch(() => undefined),
      "hostPort HTTP",
    );
    assert.equal(body, "hello from berth\n");
    await env.d.rt.removePodSandbox({ podSandboxId: pod.id });
    // the port mapping is gone with the pod
    await assert.rejects(httpGet(`http://${hostIp()}:${port}/index.html`));
  });

  test("DNS config and hostname appear inside the container", async () => {
    const pod = await env.runPod("dns", {
      hostname: "dns-host",
      dnsConfig: {
        servers: ["10.234.0.53"],
        searches: ["berth.test", "svc.berth.test"],
        options: ["ndots:3", "timeout:1"],
      },
    });
    const cid = await env.runContainer(pod, "c", ["sleep", "1000"]);
    const resolv = (
      await env.d.rt.execSync({ containerId: cid, cmd: ["cat", "/etc/resolv.conf"], timeout: 10n })
    ).stdout.toString();
    assert.match(resolv, /^nameserver 10\.234\.0\.53$/m);
    assert.match(resolv, /^search berth\.test svc\.berth\.test$/m);
    assert.match(resolv, /^options ndots:3 timeout:1$/m);
    assert.equal(
      (await env.d.rt.execSync({ containerId: cid, cmd: ["hostname"], timeout: 10n })).stdout.toString(),
      "dns-host\n",
    );
    const hosts = (
      await env.d.rt.execSync({ containerId: cid, cmd: ["cat", "/etc/hosts"], timeout: 10n })
    ).stdout.toString();
    const ip = (await env.d.rt.podSandboxStatus({ podSandboxId: pod.id })).status!.network!.ip;
    assert.match(hosts, new RegExp(`^${ip.replace(/\./g, "\\.")}\\tdns-host$`, "m"));
    await env.d.rt.removePodSandbox({ podSandboxId: pod.id });
  });
});

describe("namespace options", () => {
  test("a host-network pod gets no netns and the node's hostname; a shared PID namespace shows the sandbox", async () => {
    const pod = await env.runPod("hostnet", {
      linux: { securityContext: { namespaceOptions: { network: 2, pid: 0, ipc: 0 } } },
    });
    const st = (await env.d.rt.podSandboxStatus({ podSandboxId: pod.id })).status!;
    assert.equal(st.state, PodSandboxState.SANDBOX_READY);
    assert.equal(st.network?.ip, "");
    assert.equal(st.linux?.namespaces?.options?.network, 2);
    assert.ok(!existsSync(join(env.d.state, "netns", pod.id)));
    const cid = await env.runContainer(pod, "c", ["sleep", "1000"], {
      linux: { securityContext: { namespaceOptions: { network: 2, pid: 0, ipc: 0 } } },
    });
    const h = await env.d.rt.execSync({ containerId: cid, cmd: ["hostname"], timeout: 10n });
    assert.equal(h.stdout.toString().trim(), hostname());
    const ps = await env.d.rt.execSync({ containerId: cid, cmd: ["ps", "-o", "pid,comm"], timeout: 10n });
    assert.match(ps.stdout.toString(), /^\s*1 pause$/m, "the pod's PID namespace is shared: pause is pid 1");
    await env.d.rt.removePodSandbox({ podSandboxId: pod.id });
  });

  test("pod sysctls apply inside the pod's namespaces only; a pod's IPC namespace is its own unless host IPC", async () => {
    const hostPortStart = readFileSync("/proc/sys/net/ipv4/ip_unprivileged_port_start", "utf8").trim();
    const pod = await env.runPod("sysctl", {
      linux: { sysctls: { "net.ipv4.ip_unprivileged_port_start": "81", "kernel.shm_rmid_forced": "1" } },
    });
    const cid = await env.runContainer(pod, "c", ["sleep", "1000"]);
    const read = async (id: string, path: string) =>
      (await env.d.rt.execSync({ containerId: id, cmd: ["cat", path], timeout: 10n })).stdout.toString().trim();
    assert.equal(await read(cid, "/proc/sys/net/ipv4/ip_unprivileged_port_start"), "81");
    assert.equal(await read(cid, "/proc/sys/kernel/shm_rmid_forced"), "1");
    assert.equal(
      readFileSync("/proc/sys/net/ipv4/ip_unprivileged_port_start", "utf8").trim(),
      hostPortStart,
      "the host's value is untouched",
    );
    const ipcOf = (pid: string | number) => readlinkSync(`/proc/${pid}/ns/ipc`);
    const inPod = (
      await env.d.rt.execSync({ containerId: cid, cmd: ["readlink", "/proc/self/ns/ipc"], timeout: 10n })
    ).stdout
      .toString()
      .trim();
    assert.notEqual(inPod, ipcOf("self"), "a pod has its own IPC namespace");

    const hostIpc = await env.runPod("hostipc", {
      linux: { securityContext: { namespaceOptions: { ipc: 2 } } },
    });
    const hid = await env.runContainer(hostIpc, "c", ["sleep", "1000"], {
      linux: { securityContext: { namespaceOptions: { ipc: 2 } } },
    });
    const inHostIpc = (
      await env.d.rt.execSync({ containerId: hid, cmd: ["readlink", "/proc/self/ns/ipc"], timeout: 10n })
    ).stdout
      .toString()
      .trim();
    assert.equal(inHostIpc, ipcOf("self"), "a host-IPC pod shares the node's IPC namespace");
    await env.d.rt.removePodSandbox({ podSandboxId: pod.id });
    await env.d.rt.removePodSandbox({ podSandboxId: hostIpc.id });
  });
});

describe("security context", () => {
  let pod: { id: string; config: Parameters<CriEnv["runContainer"]>[0]["config"] };
  before(async () => {
    pod = await env.runPod("security");
  });
  after(async () => {
    await env.d.rt.removePodSandbox({ podSandboxId: pod.id });
  });
  const sh = async (cid: string, script: string) =>
    env.d.rt.execSync({ containerId: cid, cmd: ["sh", "-c", script], timeout: 20n });

  test("the image's user by default, RunAsUser when set", async () => {
    const byImage = await env.runContainer(pod, "user-image", ["sleep", "1000"], {
      image: { image: env.images.busyboxUser },
    });
    assert.equal((await sh(byImage, "id -u; id -g")).stdout.toString(), "1000\n1000\n");
    const byCri = await env.runContainer(pod, "user-cri", ["sleep", "1000"], {
      image: { image: env.images.busyboxUser },
      linux: { securityContext: { runAsUser: { value: 1234n } } },
    });
    assert.equal((await sh(byCri, "id -u")).stdout.toString(), "1234\n");
  });

  test("supplemental groups: the image's /etc/group merged by default, ignored when Strict; ContainerStatus.user tells", async () => {
    const sc = { runAsUser: { value: 1000n }, runAsGroup: { value: 1000n }, supplementalGroups: [3000n] };
    const merged = await env.runContainer(pod, "groups-merge", ["sleep", "1000"], {
      image: { image: env.images.busyboxUser },
      linux: { securityContext: sc },
    });
    assert.equal((await sh(merged, "id -G")).stdout.toString().trim().split(" ").sort().join(" "), "1000 2000 3000");
    assert.deepEqual((await env.d.rt.containerStatus({ containerId: merged })).status?.user?.linux, {
      uid: 1000n,
      gid: 1000n,
      supplementalGroups: [1000n, 2000n, 3000n],
    });
    const strict = await env.runContainer(pod, "groups-strict", ["sleep", "1000"], {
      image: { image: env.images.busyboxUser },
      linux: { securityContext: { ...sc, supplementalGroupsPolicy: 1 } },
    });
    assert.equal((await sh(strict, "id -G")).stdout.toString().trim().split(" ").sort().join(" "), "1000 3000");
    assert.deepEqual((await env.d.rt.containerStatus({ containerId: strict })).status?.user?.linux, {
      uid: 1000n,
      gid: 1000n,
      supplementalGroups: [1000n, 3000n],
    });
    assert.equal((await env.d.rt.status({})).features?.supplementalGroupsPolicy, true);
  });

  test("dropping CAP_CHOWN makes chown fail", async () => {
    const normal = await env.runContainer(pod, "chown-ok", ["sleep", "1000"]);
    assert.equal((await sh(normal, "touch /tmp/f && chown 1000 /tmp/f")).exitCode, 0);
    const dropped = await env.runContainer(pod, "chown-dropped", ["sleep", "1000"], {
      linux: { securityContext: { capabilities: { dropCapabilities: ["CHOWN"] } } },
    });
    const r = await sh(dropped, "touch /tmp/f && chown 1000 /tmp/f");
    assert.notEqual(r.exitCode, 0);
    assert.match(r.stderr.toString(), /Operation not permitted/);
  });

  test("a read-only rootfs refuses writes", async () => {
    const cid = await env.runContainer(pod, "ro", ["sleep", "1000"], {
      linux: { securityContext: { readonlyRootfs: true } },
    });
    const r = await sh(cid, "touch /newfile");
    assert.notEqual(r.exitCode, 0);
    assert.match(r.stderr.toString(), /Read-only file system/);
  });

  test("runtime-default seccomp blocks unshare; unconfined allows it", async () => {
    const def = await env.runContainer(pod, "seccomp-default", ["sleep", "1000"], {
      linux: { securityContext: { seccomp: { profileType: 0 } } },
    });
    const blocked = await sh(def, "unshare -U true");
    assert.notEqual(blocked.exitCode, 0);
    assert.match(blocked.stderr.toString(), /Operation not permitted/);
    const unconfined = await env.runContainer(pod, "seccomp-unconfined", ["sleep", "1000"], {
      linux: { securityContext: { seccomp: { profileType: 1 } } },
    });
    assert.equal((await sh(unconfined, "unshare -U true")).exitCode, 0);
  });

  test("masked and read-only paths are the request's: kubelet's defaults hide /proc/timer_list, empty lists (procMount: Unmasked) hide nothing", async () => {
    // A masked file is /dev/null bound over it; a read-only path is a read-only bind of itself.
    // (/proc/timer_list rather than /proc/kcore: kernels without CONFIG_PROC_KCORE have none.)
    const probe = `test -c /proc/timer_list && echo timer_list-masked; awk '$2 == "/proc/sys" && $4 ~ /^ro/ { print "sys-ro" }' /proc/mounts`;
    const byDefault = await env.runContainer(pod, "proc-default", ["sleep", "1000"], {
      linux: {
        securityContext: { maskedPaths: [...DEFAULT_MASKED_PATHS], readonlyPaths: [...DEFAULT_READONLY_PATHS] },
      },
    });
    assert.equal((await sh(byDefault, probe)).stdout.toString(), "timer_list-masked\nsys-ro\n");
    const unmasked = await env.runContainer(pod, "proc-unmasked", ["sleep", "1000"], {
      linux: { securityContext: { maskedPaths: [], readonlyPaths: [] } },
    });
    assert.equal((await sh(unmasked, probe)).stdout.toString(), "");
  });
});
