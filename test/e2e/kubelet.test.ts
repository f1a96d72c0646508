// A real kubelet (k8s.io/kubernetes v1.37.2, built by scripts/go-tools.sh from test/go/kubelet)
// runs standalone against a real berthd: static pods from a manifest dir, observed through
// berthd's CRI and the files kubelet and berth write. Real runc, real CNI (bridge, host-local,
// portmap) on a private bridge, busybox from a real registry on 127.0.0.1.
//
//   npm test -- kubelet
//
// The scenarios run in order against one kubelet: the pods of the first ones are still running
// when berthd is killed and restarted under kubelet, and the last one removes every manifest
// and checks that nothing of the pods is left.
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { networkInterfaces } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { ContainerState } from "../../src/gen/cri/runtime/v1/api.js";
import { goTool } from "../helpers/go-tools.js";
import { startCriEnv, until, type CriEnv } from "../helpers/cri.js";
import { daemonLeaks, processesNaming } from "../helpers/leaks.js";
import { CGROUP_ROOT, startKubelet, type StaticPod, type TestKubelet } from "../helpers/kubelet.js";
import {
  POD_UID,
  RESTART_COUNT,
  containersOf,
  podSnapshot,
  readySandbox,
  runningContainer,
  sandboxesOf,
  withLogs,
} from "../helpers/kubelet-cri.js";

const BRIDGE = "berthkub0";
const SUBNET = "10.234.50.0/24";
// Generous: image pulls, kubelet's sync loops and its 1-minute container GC on a loaded 2-core machine.
const WAIT = 180_000;

let env: CriEnv;
let k: TestKubelet;
/** Every sandbox and container id the pods had, for the final leak check. */
const ids = new Set<string>();

before(async () => {
  // runc v1.5 (as scripts/setup.sh installs it) is this berthd's default handler: kubelet runs
  // static pods with the default handler (no API server, so no RuntimeClass), and a pod with
  // hostUsers: false needs a handler that announces user namespaces (Debian's runc 1.1.5 does not).
  env = await startCriEnv({
    bridge: BRIDGE,
    subnet: SUBNET,
    defaultHandler: "runc-1.5",
    config: `[runtime.handlers."runc-1.5"]\nbinary_name = "${goTool("runc-1.5", "runc")}"\nroot = "{{dir}}/runc-1.5"\n`,
  });
  k = await startKubelet({ socket: env.d.socket });
});

after(async () => {
  // kubelet first, so it does not recreate what berthd's clean-up removes.
  await k?.stop();
  let failure: unknown;
  await env?.stop().catch((err) => (failure = err));
  await k?.cleanup().catch((err) => (failure ??= err));
  await (await import("../helpers/cri.js")).testImages().then((i) => i.stop());
  if (failure) throw failure;
});

const logs = () => ({
  kubelet: k?.logTail(200) ?? "",
  berthd: env?.d.logs().split("\n").slice(-60).join("\n") ?? "",
});
const scenario = (name: string, fn: () => Promise<void>) => test(name, () => withLogs(logs, fn));

function pod(name: string, spec: Record<string, unknown>): StaticPod {
  // Short grace: busybox sh as pid 1 ignores SIGTERM, and the tests wait for teardown.
  return { metadata: { name }, spec: { terminationGracePeriodSeconds: 2, dnsPolicy: "Default", ...spec } };
}

const forever = "while true; do sleep 1; done";

async function remember(podName: string): Promise<void> {
  for (const s of await sandboxesOf(env.d, podName)) ids.add(s.id);
  for (const c of await containersOf(env.d, podName)) ids.add(c.id);
}

async function running(podName: string, container: string) {
  return until(() => runningContainer(env.d, podName, container), `${podName}/${container} running`, WAIT);
}

async function exec(containerId: string, script: string): Promise<{ out: string; code: number }> {
  const r = await env.d.rt.execSync({ containerId, cmd: ["sh", "-c", script], timeout: 20n });
  return { out: r.stdout.toString(), code: r.exitCode };
}

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

const names = {
  logger: "",
  liveness: "",
  init: "",
  shared: "",
  web: "",
  userns: "",
  imageVolume: "",
};
const hostPort = 20000 + Math.floor(Math.random() * 20000);

describe("kubelet runs static pods on berth", () => {
  scenario("a busybox pod runs and its log appears under the pod log directory", async () => {
    names.logger = k.addPod(
      pod("logger", {
        containers: [
          {
            name: "main",
            image: env.images.busybox,
            command: ["sh", "-c", `echo hello from a static pod; cat /etc/resolv.conf; ${forever}`],
          },
        ],
      }),
    );
    const c = await running(names.logger, "main");
    const sandbox = (await readySandbox(env.d, names.logger))!;
    assert.equal(sandbox.metadata?.namespace, "berth-test");
    const uid = sandbox.labels[POD_UID]!;
    const st = (await env.d.rt.containerStatus({ containerId: c.id })).status!;
    // kubelet's layout: <podLogsDir>/<namespace>_<pod>_<uid>/<container>/<restart count>.log
    assert.equal(st.logPath, join(k.podLogsDir, `berth-test_${names.logger}_${uid}`, "main", "0.log"));
    const log = await until(
      () => {
        const text = existsSync(st.logPath) ? readFileSync(st.logPath, "utf8") : "";
        return text.includes("search berth.test") ? text : undefined;
      },
      "the container's log",
      WAIT,
    );
    assert.match(log, /^\S+ stdout F hello from a static pod$/m);
    // dnsPolicy Default: the pod got kubelet's resolvConf through the sandbox's DNS config.
    assert.match(log, /^\S+ stdout F nameserver 127\.0\.0\.1$/m);
    await remember(names.logger);
  });

  scenario("an exec liveness probe that starts failing makes kubelet restart the container", async () => {
    names.liveness = k.addPod(
      pod("liveness", {
        containers: [
          {
            name: "app",
            image: env.images.busybox,
            command: ["sh", "-c", `touch /tmp/healthy; ${forever}`],
            livenessProbe: {
              exec: { command: ["cat", "/tmp/healthy"] },
              periodSeconds: 2,
              // Probes run through berthd's ExecSync; a slow machine must not fail them.
              timeoutSeconds: 15,
              failureThreshold: 2,
            },
          },
        ],
      }),
    );
    const first = await running(names.liveness, "app");
    assert.equal(first.metadata?.attempt, 0);
    await remember(names.liveness);
    // Healthy for now: the probe passes. Then make it fail.
    assert.equal((await exec(first.id, "rm /tmp/healthy")).code, 0);
    const second = await until(
      async () =>
        (await containersOf(env.d, names.liveness, "app")).find(
          (c) => c.metadata?.attempt === 1 && c.state === ContainerState.CONTAINER_RUNNING,
        ),
      "the restarted container",
      WAIT,
    );
    assert.notEqual(second.id, first.id);
    assert.equal(second.annotations[RESTART_COUNT], "1");
    const old = (await env.d.rt.containerStatus({ containerId: first.id })).status!;
    assert.equal(old.state, ContainerState.CONTAINER_EXITED);
    // The same pod sandbox: kubelet restarted the container, not the pod.
    assert.equal(second.podSandboxId, first.podSandboxId);
    await remember(names.liveness);
    // Its probe keeps restarting nothing else: take it away before berthd is killed below.
    k.removePod("liveness");
    await until(async () => !(await runningContainer(env.d, names.liveness, "app")), "the liveness pod stopping", WAIT);
  });

  scenario("an init container runs to completion before the app container starts", async () => {
    names.init = k.addPod(
      pod("init", {
        initContainers: [
          {
            name: "prepare",
            image: env.images.busybox,
            command: ["sh", "-c", "sleep 2; echo prepared > /work/ready"],
            volumeMounts: [{ name: "work", mountPath: "/work" }],
          },
        ],
        containers: [
          {
            name: "app",
            image: env.images.busybox,
            command: ["sh", "-c", `cat /work/ready; ${forever}`],
            volumeMounts: [{ name: "work", mountPath: "/work" }],
          },
        ],
        volumes: [{ name: "work", emptyDir: {} }],
      }),
    );
    const app = await running(names.init, "app");
    const [init] = await containersOf(env.d, names.init, "prepare");
    assert.ok(init, "the init container is kept");
    const is = (await env.d.rt.containerStatus({ containerId: init.id })).status!;
    const as = (await env.d.rt.containerStatus({ containerId: app.id })).status!;
    assert.equal(is.state, ContainerState.CONTAINER_EXITED);
    assert.equal(is.exitCode, 0);
    assert.ok(is.finishedAt <= as.createdAt, `init finished at ${is.finishedAt}, app created at ${as.createdAt}`);
    const log = await until(
      () => {
        const t = readFileSync(as.logPath, "utf8");
        return t.includes("prepared") ? t : undefined;
      },
      "the app's log",
      WAIT,
    );
    assert.match(log, /stdout F prepared$/m);
    await remember(names.init);
  });

  scenario("an emptyDir is shared by two containers of a pod", async () => {
    const mount = [{ name: "data", mountPath: "/data" }];
    names.shared = k.addPod(
      pod("shared", {
        containers: [
          {
            name: "writer",
            image: env.images.busybox,
            command: ["sh", "-c", `echo from-writer > /data/msg; ${forever}`],
            volumeMounts: mount,
          },
          { name: "reader", image: env.images.busybox, command: ["sh", "-c", forever], volumeMounts: mount },
        ],
        volumes: [{ name: "data", emptyDir: {} }],
      }),
    );
    const writer = await running(names.shared, "writer");
    const reader = await running(names.shared, "reader");
    const seen = await until(
      async () => {
        const r = await exec(reader.id, "cat /data/msg");
        return r.code === 0 ? r.out : undefined;
      },
      "the writer's file in the reader",
      WAIT,
    );
    assert.equal(seen, "from-writer\n");
    assert.equal((await exec(reader.id, "echo from-reader > /data/back")).code, 0);
    assert.deepEqual(await exec(writer.id, "cat /data/back"), { out: "from-reader\n", code: 0 });
    // It is kubelet's emptyDir on the node, not a directory of berth's.
    const uid = (await readySandbox(env.d, names.shared))!.labels[POD_UID]!;
    const onNode = join(k.rootDir, "pods", uid, "volumes", "kubernetes.io~empty-dir", "data");
    assert.equal(readFileSync(join(onNode, "msg"), "utf8"), "from-writer\n");
    assert.equal(readFileSync(join(onNode, "back"), "utf8"), "from-reader\n");
    await remember(names.shared);
  });

  scenario("a hostPort reaches a web server in the pod", async () => {
    names.web = k.addPod(
      pod("web", {
        containers: [
          {
            name: "httpd",
            image: env.images.busybox,
            command: ["httpd", "-f", "-p", "8080", "-h", "/www"],
            ports: [{ containerPort: 8080, hostPort, protocol: "TCP" }],
          },
        ],
      }),
    );
    await running(names.web, "httpd");
    const body = await until(
      () => httpGet(`http://${hostIp()}:${hostPort}/index.html`).catch(() => undefined),
      "HTTP through the hostPort",
      WAIT,
    );
    assert.equal(body, "hello from berth\n");
    await remember(names.web);
  });

  scenario("a pod with hostUsers: false runs as root of its own user namespace, its emptyDir idmapped", async () => {
    names.userns = k.addPod(
      pod("userns", {
        hostUsers: false,
        containers: [
          {
            name: "main",
            image: env.images.busybox,
            command: ["sh", "-c", `echo from-userns > /data/msg; echo x > /in-rootfs; ${forever}`],
            volumeMounts: [{ name: "data", mountPath: "/data" }],
          },
        ],
        volumes: [{ name: "data", emptyDir: {} }],
      }),
    );
    const c = await running(names.userns, "main");
    const sandbox = (await readySandbox(env.d, names.userns))!;
    // kubelet asked for the pod's own user namespace, with a range of its choosing (65536 ids)
    const st = await env.d.rt.podSandboxStatus({ podSandboxId: sandbox.id });
    const userns = st.status?.linux?.namespaces?.options?.usernsOptions;
    assert.equal(userns?.mode, 0 /* POD */, JSON.stringify(st.status?.linux));
    const hostId = userns!.uids[0]!.hostId;
    assert.ok(hostId >= 65536 && userns!.uids[0]!.length === 65536, JSON.stringify(userns));
    // root inside, the range's first uid outside
    assert.deepEqual(await exec(c.id, "id -u"), { out: "0\n", code: 0 });
    const map = (await exec(c.id, "cat /proc/self/uid_map")).out.trim().split(/\s+/).map(Number);
    assert.deepEqual(map, [0, hostId, 65536]);
    const info = JSON.parse((await env.d.rt.containerStatus({ containerId: c.id, verbose: true })).info.info) as {
      pid: number;
    };
    const uidLine = readFileSync(`/proc/${info.pid}/status`, "utf8").match(/^Uid:\s+(\S+)/m)![1];
    assert.equal(Number(uidLine), hostId);
    // it wrote to its rootfs and to kubelet's emptyDir (idmapped: stored as its uid inside, 0)
    assert.deepEqual(await exec(c.id, "cat /in-rootfs /data/msg"), { out: "x\nfrom-userns\n", code: 0 });
    const onNode = join(k.rootDir, "pods", sandbox.labels[POD_UID]!, "volumes", "kubernetes.io~empty-dir", "data");
    assert.equal(readFileSync(join(onNode, "msg"), "utf8"), "from-userns\n");
    assert.equal(statSync(join(onNode, "msg")).uid, 0);
    await remember(names.userns);
  });

  scenario("a pod with an image volume reads a file of another image, and removing it leaves no mount", async () => {
    // The volume's image is not the container's: kubelet pulls it (IfNotPresent) and hands
    // berth a CRI Mount naming it; its /www/index.html is a file only the test images have.
    names.imageVolume = k.addPod(
      pod("image-volume", {
        containers: [
          {
            name: "reader",
            image: env.images.busybox,
            command: ["sh", "-c", `cat /content/www/index.html; ${forever}`],
            volumeMounts: [{ name: "content", mountPath: "/content" }],
          },
        ],
        volumes: [{ name: "content", image: { reference: env.images.busyboxUser, pullPolicy: "IfNotPresent" } }],
      }),
    );
    const c = await running(names.imageVolume, "reader");
    const st = (await env.d.rt.containerStatus({ containerId: c.id })).status!;
    const log = await until(
      () => {
        const t = existsSync(st.logPath) ? readFileSync(st.logPath, "utf8") : "";
        return t.includes("hello from berth") ? t : undefined;
      },
      "the reader's log",
      WAIT,
    );
    assert.match(log, /^\S+ stdout F hello from berth$/m);
    const volume = st.mounts.find((m) => m.containerPath === "/content");
    // kubelet pulled the image and names it by its id; the reference the pod gave is kept.
    const pulled = (await env.d.img.imageStatus({ image: { image: env.images.busyboxUser } })).image!;
    assert.equal(volume?.image?.userSpecifiedImage, env.images.busyboxUser, JSON.stringify(st.mounts));
    assert.equal(volume?.image?.imageRef, pulled.id);
    assert.equal(volume?.readonly, true);
    await remember(names.imageVolume);

    const podIds = [c.podSandboxId, c.id];
    k.removePod("image-volume");
    await until(async () => (await sandboxesOf(env.d, names.imageVolume)).length === 0, "the pod's removal", WAIT);
    assert.deepEqual(processesNaming(podIds), []);
    assert.deepEqual(
      readFileSync("/proc/self/mountinfo", "utf8")
        .split("\n")
        .filter((l) => podIds.some((id) => l.includes(id)) || l.includes("image-volume")),
      [],
    );
  });

  scenario(
    "berthd killed and restarted under kubelet: the pods keep running and kubelet restarts nothing",
    async () => {
      const pods = [names.logger, names.init, names.shared, names.web];
      const snapshot = async () =>
        Object.fromEntries(await Promise.all(pods.map(async (p) => [p, await podSnapshot(env.d, p)])));
      const before = await snapshot();
      for (const p of pods)
        assert.ok(
          before[p].some((l: string) => l.endsWith("RUNNING")),
          `${p}: ${before[p]}`,
        );

      env.d.kill("SIGKILL");
      await env.restart();
      assert.deepEqual(await snapshot(), before, "berthd recovered every pod and container as it was");

      // A pod added now runs only once kubelet talks to the new berthd.
      const late = k.addPod(
        pod("late", { containers: [{ name: "main", image: env.images.busybox, command: ["sh", "-c", forever] }] }),
      );
      await running(late, "main");
      await remember(late);
      // kubelet syncs every pod every syncFrequency (10 s): over three of them it must change nothing.
      const watchUntil = Date.now() + 30_000;
      while (Date.now() < watchUntil) {
        assert.deepEqual(await snapshot(), before);
        await new Promise((r) => setTimeout(r, 2000));
      }
      assert.equal(await httpGet(`http://${hostIp()}:${hostPort}/index.html`), "hello from berth\n");
    },
  );

  scenario("removing the manifests tears the pods down and leaves nothing of berth's", async () => {
    // One pod first: its sandbox, its port mapping, its processes go; the others stay.
    const webSandbox = (await readySandbox(env.d, names.web))!;
    const webUid = webSandbox.labels[POD_UID]!;
    const info = JSON.parse(
      (await env.d.rt.podSandboxStatus({ podSandboxId: webSandbox.id, verbose: true })).info.info!,
    );
    const netns = info.netNamespacePath as string;
    assert.ok(existsSync(netns), netns);
    const webIds = [webSandbox.id, ...(await containersOf(env.d, names.web)).map((c) => c.id)];
    k.removePod("web");
    // kubelet stops the pod at once and removes it in its container GC (every minute).
    await until(async () => (await sandboxesOf(env.d, names.web)).length === 0, "the web pod's removal", WAIT);
    await assert.rejects(httpGet(`http://${hostIp()}:${hostPort}/index.html`));
    assert.ok(!existsSync(netns), `${netns} is gone`);
    assert.deepEqual(processesNaming(webIds), []);
    assert.deepEqual(
      readFileSync("/proc/self/mountinfo", "utf8")
        .split("\n")
        .filter((l) => webIds.some((id) => l.includes(id))),
      [],
    );
    assert.ok(await readySandbox(env.d, names.logger), "the other pods still run");

    for (const p of k.pods()) k.removePod(p);
    await until(async () => (await env.d.rt.listPodSandbox({})).items.length === 0, "every pod's removal", WAIT);
    assert.deepEqual((await env.d.rt.listContainers({})).containers, []);
    assert.deepEqual(daemonLeaks(env.d, { bridge: BRIDGE, ids }), []);
    // kubelet removed its pod cgroups too (it does so once the pod is gone from berth).
    const podCgroups = () =>
      ["memory", "pids"].flatMap((ctl) =>
        ["", "besteffort", "burstable"].flatMap((qos) => {
          const d = join("/sys/fs/cgroup", ctl, CGROUP_ROOT, "kubepods", qos);
          return existsSync(d)
            ? readdirSync(d)
                .filter((n) => n.startsWith("pod"))
                .map((n) => join(d, n))
            : [];
        }),
      );
    await until(() => podCgroups().length === 0, `kubelet removing ${podCgroups().join(" ")} (and ${webUid}'s)`, WAIT);
  });
});
