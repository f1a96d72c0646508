// gVisor pods through berthd's CRI: a pod whose RuntimeHandler is "runsc" runs its sandbox
// (berth's pause) as the root of one gVisor sandbox in the pod's CNI netns, and its
// containers as sub-containers of that sandbox. Real runsc, real CNI on a private bridge,
// a runc pod beside it in the same berthd. The first part needs no runsc: the shim's runsc
// pieces (sub-container detection, the start wrapper, stats conversion).
//
// On this kernel (6.x) Debian 12's runsc (20221219) cannot use its own network stack: it
// takes any netns for the host's (see README, runtime handlers), so the probe below picks
// `--network=host` when plain runsc refuses; the sentry then uses the pod netns's sockets.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { ContainerState, PodSandboxState } from "../../src/gen/cri/runtime/v1/api.js";
import { runtimeError, type OciRuntime } from "../../src/shim/runtime.js";
import { isSubcontainerBundle, runscStatsToMetrics, subcontainerStartArgv } from "../../src/shim/runsc.js";
import { sleep, until, type CriEnv } from "../helpers/cri.js";
import { useCriEnv } from "../helpers/cri-fixture.js";
import { daemonLeaks, processesNaming } from "../helpers/leaks.js";

const BRIDGE = "berthgv0";
const SUBNET = "10.234.40.0/24";

/** Whether runsc can run a sandbox here, and the global flags it needs for a pod network. */
function probeRunsc(): { skip: string | false; flags: string } {
  const which = spawnSync("runsc", ["--version"], { encoding: "utf8" });
  if (which.error || which.status !== 0) return { skip: "runsc is not installed", flags: "" };
  const root = mkdtempSync(join(tmpdir(), "berth-runsc-probe-"));
  try {
    const run = (flags: string[]) =>
      spawnSync("runsc", ["--root", root, ...flags, "do", "/bin/sh", "-c", "exit 3"], {
        encoding: "utf8",
        timeout: 60_000,
      });
    const isolated = run(["--network=none"]);
    if (isolated.status !== 3) {
      return { skip: `runsc cannot run a sandbox here: ${(isolated.stderr || isolated.stdout).trim()}`, flags: "" };
    }
    const netstack = run([]);
    if (netstack.status === 3) return { skip: false, flags: "" };
    if (/root network namespace/.test(netstack.stderr + netstack.stdout))
      return { skip: false, flags: "--network=host" };
    return { skip: `runsc cannot network a sandbox here: ${(netstack.stderr || netstack.stdout).trim()}`, flags: "" };
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

describe("the shim's runsc pieces (no runsc needed)", () => {
  let dir: string;
  before(() => (dir = mkdtempSync(join(tmpdir(), "berth-runsc-unit-"))));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test("a bundle is a sub-container exactly when the CRI container-type annotation says container", async () => {
    const bundle = (name: string, annotations?: Record<string, string>) => {
      const b = join(dir, name);
      spawnSync("mkdir", ["-p", b]);
      writeFileSync(join(b, "config.json"), JSON.stringify({ ociVersion: "1.0.2", annotations }));
      return b;
    };
    const cri = "io.kubernetes.cri.container-type";
    assert.equal(await isSubcontainerBundle(bundle("c", { [cri]: "container" })), true);
    assert.equal(await isSubcontainerBundle(bundle("s", { [cri]: "sandbox" })), false);
    assert.equal(
      await isSubcontainerBundle(bundle("crio", { "io.kubernetes.cri-o.ContainerType": "container" })),
      true,
    );
    assert.equal(await isSubcontainerBundle(bundle("plain")), false);
    assert.equal(await isSubcontainerBundle(join(dir, "missing")), false);
  });

  test("the start wrapper gives the container its stdio, leaves a waiter that exits with the container's status", async () => {
    // A stand-in for runsc: `start` prints through the stdio it was given, `wait` answers
    // as runsc does; every call is logged with its global flags.
    const fake = join(dir, "fake-runsc");
    const calls = join(dir, "calls");
    writeFileSync(
      fake,
      `#!/bin/sh
echo "$*" >>${calls}
for last; do :; done
case " $* " in
  *" start "*) echo "out of $last"; echo "err of $last" >&2 ;;
  *" wait "*) sleep 0.2; echo '{"id":"'$last'","exitStatus":137}' ;;
esac
`,
    );
    chmodSync(fake, 0o755);
    const runtime = {
      command: fake,
      globalArgs: (log: string) => ["--root", "/r", "--log", log],
    } as unknown as OciRuntime;
    const pidFile = join(dir, "pid");
    const argv = subcontainerStartArgv(runtime, "c1", pidFile, "/l");
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    const status = await new Promise<number | null>((r) => child.on("close", r));
    assert.equal(status, 0);
    assert.equal(out, "out of c1\n");
    assert.equal(err, "err of c1\n");
    const waiter = Number(readFileSync(pidFile, "utf8").trim());
    assert.ok(waiter > 0 && waiter !== child.pid);
    // The waiter is not our child (the monitor reaps it in real life): wait for it to go.
    await until(
      () => !existsSync(`/proc/${waiter}`) || /\) Z/.test(readFileSync(`/proc/${waiter}/stat`, "utf8")),
      "the waiter to exit",
    );
    assert.deepEqual(readFileSync(calls, "utf8").trim().split("\n"), [
      "--root /r --log /l start c1",
      "--root /r --log /l wait c1",
    ]);
  });

  test("a failed runsc start fails the wrapper with runsc's status and leaves no waiter", () => {
    const fake = join(dir, "failing-runsc");
    writeFileSync(fake, "#!/bin/sh\nexit 5\n");
    chmodSync(fake, 0o755);
    const runtime = { command: fake, globalArgs: () => [] } as unknown as OciRuntime;
    const pidFile = join(dir, "pid-failed");
    const argv = subcontainerStartArgv(runtime, "c2", pidFile, "/l");
    const r = spawnSync(argv[0]!, argv.slice(1));
    assert.equal(r.status, 5);
    assert.equal(existsSync(pidFile), false);
  });

  test("runsc's refusal of the pod netns says which flag makes it work", () => {
    const err = runtimeError(
      "runsc start",
      'starting container: setting up network: creating interfaces from net namespace "/proc/1/ns/net": cannot run with network enabled in root network namespace',
    );
    assert.match(err.message, /^runsc start: starting container: .*root network namespace/);
    assert.match(err.message, /binary_name = "runsc --network=host"/);
  });

  test("`runsc events --stats` becomes cgroup v1 metrics", () => {
    // As printed by runsc 20221219 for a running container.
    const m = runscStatsToMetrics(
      "c1",
      '{"type":"stats","id":"c1","data":{"cpu":{"usage":{"total":131331898}},"memory":{"usage":{"limit":0,"usage":2027520,"failcnt":0},"swap":{"limit":0,"failcnt":0}},"pids":{"current":1}}}',
    );
    assert.equal(m.cpu?.usage?.total, 131331898n);
    assert.equal(m.memory?.usage?.usage, 2027520n);
    assert.equal(m.pids?.current, 1n);
  });
});

const probe = probeRunsc();
if (probe.skip) console.log(`# skipping the gVisor pod tests: ${probe.skip}`);

describe("gVisor pods through the CRI", { skip: probe.skip }, () => {
  let env: CriEnv;
  const ids = new Set<string>();

  useCriEnv(
    {
      bridge: BRIDGE,
      subnet: SUBNET,
      config: `
[runtime.handlers.runsc]
runtime_type = "io.containerd.berth.v2"
binary_name = "${["runsc", probe.flags].filter(Boolean).join(" ")}"
root = "{{dir}}/runsc"
`,
    },
    (e) => (env = e),
  );

  const runscPod = async (name: string) => {
    const pod = await env.runPod(name, {}, "runsc");
    ids.add(pod.id);
    return pod;
  };
  const run = async (pod: Awaited<ReturnType<CriEnv["runPod"]>>, name: string, args: string[]) => {
    const id = await env.runContainer(pod, name, args);
    ids.add(id);
    return id;
  };
  const exited = (id: string) =>
    until(
      async () => {
        const s = (await env.d.rt.containerStatus({ containerId: id })).status!;
        return s.state === ContainerState.CONTAINER_EXITED ? s : undefined;
      },
      `container ${id} to exit`,
      60_000,
    );
  const logOf = (pod: string, name: string) => readFileSync(join(env.logDir, pod, `${name}.log`), "utf8");
  // Debian's runsc (20221219) in host-network mode has two socket bugs that a test server in the
  // sandbox must step around (plain `runsc do` shows both; berth is not involved):
  // - A blocking read() of a socket with nothing to read yet returns at once (EAGAIN) instead of
  //   waiting; poll() is right. busybox httpd reads the request that way and closed a connection
  //   whose request had not arrived yet (CI, a loaded machine); busybox wget reads the answer that
  //   way. busybox nc and ash's `read` builtin poll first.
  // - A blocking accept() is interrupted (EINTR) when a child exits, even with SIGCHLD ignored,
  //   which ends `nc -ll`, the forking server.
  // So the pod's server is a loop of single-connection `nc -l -e`: the shell reads the request
  // line and the headers with `read` (none left unread to turn the close into a reset), logs the
  // request line to stderr and answers with the page. Between two connections nothing listens
  // for a moment, so each client first waits until the server listens (serverListening).
  const serve = [
    'IFS= read -r req; echo "request: $req" >&2',
    'cr=$(printf "\\r"); while IFS= read -r h && [ "$h" != "$cr" ] && [ -n "$h" ]; do :; done',
    'printf "HTTP/1.0 200 OK\\r\\nContent-Type: text/html\\r\\n\\r\\n"; cat /www/index.html',
  ].join("; ");
  const serverArgv = ["sh", "-c", `while :; do nc -l -p 8080 -e sh -c '${serve}'; done`];
  const serverListening = () =>
    until(
      async () =>
        (await env.d.rt.execSync({ containerId: web.server, cmd: ["sh", "-c", "netstat -tln | grep -q ':8080 '"] }))
          .exitCode === 0,
      "the pod's server to listen",
    );
  // GET `path` over a raw TCP connection with nc (see above for wget). stdin stays open until the
  // answer has arrived (busybox nc may stop at stdin's EOF), however long a loaded machine makes
  // that take; nc ends when the server closes the connection (HTTP/1.0).
  const httpGet = (addr: string, path: string) =>
    `{ printf 'GET ${path} HTTP/1.0\\r\\n\\r\\n'; i=0; while ! grep -qs "hello from berth" /tmp/answer && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; } | nc ${addr} 8080 >/tmp/answer; cat /tmp/answer`;

  let web: { pod: Awaited<ReturnType<CriEnv["runPod"]>>; ip: string; server: string };

  test("a runsc pod gets a pod IP, runs under gVisor's kernel, and a runc pod reaches it by that IP", async () => {
    const pod = await runscPod("gv-web");
    const st = (await env.d.rt.podSandboxStatus({ podSandboxId: pod.id, verbose: true })).status!;
    assert.equal(st.state, PodSandboxState.SANDBOX_READY);
    assert.equal(st.runtimeHandler, "runsc");
    const ip = st.network!.ip;
    assert.match(ip, /^10\.234\.40\.\d+$/);
    const server = await run(pod, "server", serverArgv);
    web = { pod, ip, server };

    // The pod's own view: its IP on eth0, its hostname and pod files, gVisor's kernel.
    const seen = await env.d.rt.execSync({
      containerId: server,
      cmd: ["sh", "-c", "ip -4 addr show eth0; hostname; cat /etc/hostname; grep gv-web /etc/hosts; uname -r"],
      timeout: 30n,
    });
    assert.equal(seen.exitCode, 0, seen.stderr.toString());
    const text = seen.stdout.toString();
    assert.match(text, new RegExp(`inet ${ip.replaceAll(".", "\\.")}/24`));
    assert.match(text, /^gv-web\ngv-web\n/m);
    assert.match(text, new RegExp(`^${ip.replaceAll(".", "\\.")}\\s+gv-web$`, "m"));
    const hostRelease = readFileSync("/proc/sys/kernel/osrelease", "utf8").trim();
    assert.notEqual(text.trim().split("\n").at(-1), hostRelease);

    const client = await env.runPod("gv-client"); // the default handler: runc
    ids.add(client.id);
    await serverListening();
    const get = await run(client, "get", ["sh", "-c", `wget -qO- http://${ip}:8080/from-the-runc-pod`]);
    const s = await exited(get);
    assert.equal(s.exitCode, 0, logOf("gv-client", "get"));
    assert.match(logOf("gv-client", "get"), /stdout F hello from berth$/m);
    assert.match(logOf("gv-web", "server"), /stderr F request: GET \/from-the-runc-pod HTTP\/1\.1\r?$/m);
    await env.d.rt.removePodSandbox({ podSandboxId: client.id });
  });

  test("two containers of one runsc pod share its network over localhost", async () => {
    await serverListening();
    const cid = await run(web.pod, "local", ["sh", "-c", httpGet("127.0.0.1", "/from-localhost")]);
    const s = await exited(cid);
    assert.equal(s.exitCode, 0, logOf("gv-web", "local"));
    assert.match(logOf("gv-web", "local"), /stdout F HTTP\/1\.[01] 200 OK/);
    assert.match(logOf("gv-web", "local"), /stdout F hello from berth$/m);
    // The server logged the request: it came from the other container, over 127.0.0.1.
    await until(
      () => /stderr F request: GET \/from-localhost HTTP\/1\.0\r?$/m.test(logOf("gv-web", "server")),
      "the server's log",
    );
  });

  test("ExecSync returns a runsc container's output and exit code; ContainerStats has its usage", async () => {
    const r = await env.d.rt.execSync({
      containerId: web.server,
      cmd: ["sh", "-c", "echo out; echo err >&2; exit 3"],
      timeout: 30n,
    });
    assert.equal(r.stdout.toString(), "out\n");
    assert.equal(r.stderr.toString(), "err\n");
    assert.equal(r.exitCode, 3);

    // gVisor counts a container's CPU time over its live processes (and the children they
    // reaped): an exec'd process that already exited no longer counts, and an idle server may
    // show 0. So the work runs while the usage is read: a busy loop, exec'd, spins until a
    // second exec tells it to stop.
    const busy = env.d.rt.execSync({
      containerId: web.server,
      cmd: ["sh", "-c", "while [ ! -e /tmp/stop-spinning ]; do :; done; rm /tmp/stop-spinning"],
      timeout: 120n,
    });
    let stats;
    try {
      stats = await until(async () => {
        const s = (await env.d.rt.containerStats({ containerId: web.server })).stats!;
        return (s.cpu?.usageCoreNanoSeconds?.value ?? 0n) > 0n ? s : undefined;
      }, "the runsc container's cpu usage to show its work");
    } finally {
      await env.d.rt.execSync({ containerId: web.server, cmd: ["touch", "/tmp/stop-spinning"], timeout: 30n });
      assert.equal((await busy).exitCode, 0);
    }
    assert.ok((stats.memory?.workingSetBytes?.value ?? 0n) > 0n, "memory working set");
  });

  test("a runsc container's output reaches its CRI log and its exit code is reported", async () => {
    const cid = await run(web.pod, "exit7", ["sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 7"]);
    const s = await exited(cid);
    assert.equal(s.exitCode, 7);
    assert.equal(s.reason, "Error");
    assert.ok(s.finishedAt >= s.startedAt && s.startedAt > 0n);
    const log = logOf("gv-web", "exit7");
    assert.match(log, /^\S+ stdout F to-stdout$/m);
    assert.match(log, /^\S+ stderr F to-stderr$/m);
    await env.d.rt.removeContainer({ containerId: cid });
  });

  const psIn = async (cid: string) =>
    (await env.d.rt.execSync({ containerId: cid, cmd: ["ps", "-o", "pid,args"], timeout: 30n })).stdout.toString();
  const grpcCode = (err: unknown) => (err as { code?: number }).code;
  const leftOf = (ids: Iterable<string>) => daemonLeaks(env.d, { bridge: BRIDGE, ids });
  const removePod = async (id: string, containers: string[]) => {
    await env.d.rt.stopPodSandbox({ podSandboxId: id }, { deadlineMs: 120_000 });
    await env.d.rt.removePodSandbox({ podSandboxId: id }, { deadlineMs: 120_000 });
    await until(() => leftOf([id, ...containers]).length === 0, "nothing of the pod to be left", 10_000).catch(
      () => undefined,
    );
    assert.deepEqual(leftOf([id, ...containers]), []);
  };

  test("a timed-out ExecSync in a runsc container returns DEADLINE_EXCEEDED and its command is gone from the sandbox", async () => {
    await assert.rejects(
      env.d.rt.execSync({ containerId: web.server, cmd: ["sleep", "1000"], timeout: 2n }, { deadlineMs: 60_000 }),
      (e) => grpcCode(e) === 4, // DEADLINE_EXCEEDED
    );
    // The kill went into the sandbox, not just to runsc's host-side exec process.
    await until(async () => !/sleep 1000/.test(await psIn(web.server)), "the timed-out command to end", 10_000);
    assert.doesNotMatch(await psIn(web.server), /sleep 1000/);
    // and the container carries on
    const r = await env.d.rt.execSync({ containerId: web.server, cmd: ["echo", "alive"], timeout: 30n });
    assert.equal(r.stdout.toString(), "alive\n");
  });

  test("StopContainer kills a runsc container that ignores SIGTERM once the timeout passes", async () => {
    const cid = await run(web.pod, "stubborn", ["sh", "-c", "trap '' TERM; echo ready; while true; do sleep 1; done"]);
    await until(() => /stdout F ready$/m.test(logOf("gv-web", "stubborn")), "the trap to be set");
    await env.d.rt.stopContainer({ containerId: cid, timeout: 2n }, { deadlineMs: 60_000 });
    const s = (await env.d.rt.containerStatus({ containerId: cid })).status!;
    assert.equal(s.state, ContainerState.CONTAINER_EXITED);
    assert.equal(s.exitCode, 137);
    await env.d.rt.removeContainer({ containerId: cid });
  });

  test("a runsc container with a terminal: its output reaches the log, ExecSync works, stop and remove", async () => {
    const cid = await env.runContainer(
      web.pod,
      "tty",
      ["sh", "-c", "echo tty-out; [ -t 1 ] && echo stdout-is-a-tty; exec sleep 1000"],
      { tty: true },
    );
    ids.add(cid);
    await until(() => /stdout-is-a-tty/.test(logOf("gv-web", "tty")), "the tty container's output");
    const log = logOf("gv-web", "tty");
    assert.match(log, /^\S+ stdout F tty-out\r?$/m);
    assert.equal(
      (await env.d.rt.containerStatus({ containerId: cid })).status!.state,
      ContainerState.CONTAINER_RUNNING,
    );
    const r = await env.d.rt.execSync({ containerId: cid, cmd: ["sh", "-c", "echo via-exec; exit 4"], timeout: 30n });
    assert.equal(r.stdout.toString(), "via-exec\n");
    assert.equal(r.exitCode, 4);
    await env.d.rt.stopContainer({ containerId: cid, timeout: 5n }, { deadlineMs: 60_000 });
    const s = (await env.d.rt.containerStatus({ containerId: cid })).status!;
    assert.equal(s.state, ContainerState.CONTAINER_EXITED);
    assert.equal(s.exitCode, 143);
    await env.d.rt.removeContainer({ containerId: cid });
  });

  test("a runsc container with a terminal that is created but never started is removed cleanly", async () => {
    const { containerId } = await env.d.rt.createContainer(
      {
        podSandboxId: web.pod.id,
        config: env.containerConfig("tty-unstarted", ["sh", "-c", "echo never"], { tty: true }),
        sandboxConfig: web.pod.config,
      },
      { deadlineMs: 120_000 },
    );
    ids.add(containerId);
    assert.equal((await env.d.rt.containerStatus({ containerId })).status!.state, ContainerState.CONTAINER_CREATED);
    await env.d.rt.removeContainer({ containerId });
    assert.deepEqual(
      processesNaming([containerId]).map((p) => p.cmd),
      [],
      "no wrapper or monitor of the removed container",
    );
  });

  test("stopping and removing a runsc pod leaves no process, netns, IP, mount or runsc state behind", async () => {
    const runscRoot = join(env.d.dir, "runsc");
    await env.d.rt.stopContainer({ containerId: web.server, timeout: 10n });
    const s = (await env.d.rt.containerStatus({ containerId: web.server })).status!;
    assert.equal(s.state, ContainerState.CONTAINER_EXITED);
    assert.equal(s.exitCode, 143); // the server (nc) ends on SIGTERM

    await env.d.rt.stopPodSandbox({ podSandboxId: web.pod.id });
    const st = (await env.d.rt.podSandboxStatus({ podSandboxId: web.pod.id })).status!;
    assert.equal(st.state, PodSandboxState.SANDBOX_NOTREADY);
    assert.equal(st.network?.ip ?? "", "");
    await env.d.rt.removePodSandbox({ podSandboxId: web.pod.id });

    const list = spawnSync("runsc", ["--root", runscRoot, "list", "-q"], { encoding: "utf8" });
    assert.equal(list.stdout.trim(), "", "runsc still knows containers");
    await until(() => leftOf(ids).length === 0, "nothing of the pods to be left", 10_000).catch(() => undefined);
    assert.deepEqual(leftOf(ids), []);
    assert.deepEqual(
      processesNaming(["runsc-sandbox", "runsc-gofer"]).filter((p) => p.cmd.includes(runscRoot)),
      [],
    );
  });
  test("berthd SIGKILLed and restarted: a runsc pod and its containers are listed true, keep running, exec, stop and remove clean", async () => {
    const pod = await runscPod("gv-restart");
    const runner = await run(pod, "runner", [
      "sh",
      "-c",
      "i=0; while true; do echo tick$i; i=$((i+1)); sleep 0.2; done",
    ]);
    const exiter = await run(pod, "exiter", ["sh", "-c", "sleep 3; exit 42"]);
    const ticks = () => [...logOf("gv-restart", "runner").matchAll(/ stdout F tick(\d+)$/gm)].length;
    await until(() => ticks() > 2, "first ticks");
    const pidOf = async (cid: string) =>
      (JSON.parse((await env.d.rt.containerStatus({ containerId: cid, verbose: true })).info.info!) as { pid: number })
        .pid;
    const runnerPid = await pidOf(runner);

    env.d.kill("SIGKILL");
    await env.d.exited;
    await sleep(5000); // the exiter exits while berthd is down
    await (env as CriEnv).restart();

    assert.ok((await env.d.rt.listPodSandbox({})).items.some((p) => p.id === pod.id));
    assert.equal(
      (await env.d.rt.podSandboxStatus({ podSandboxId: pod.id })).status?.state,
      PodSandboxState.SANDBOX_READY,
    );
    const list = (await env.d.rt.listContainers({ filter: { podSandboxId: pod.id } })).containers;
    assert.deepEqual(list.map((c) => c.id).sort(), [runner, exiter].sort());
    assert.equal(
      (await env.d.rt.containerStatus({ containerId: runner })).status!.state,
      ContainerState.CONTAINER_RUNNING,
    );
    assert.equal(await pidOf(runner), runnerPid, "the same process, untouched");
    const es = await exited(exiter);
    assert.equal(es.exitCode, 42);
    const before = ticks();
    await until(() => ticks() > before + 3, "ticks after the restart");
    const r = await env.d.rt.execSync({ containerId: runner, cmd: ["echo", "still here"], timeout: 30n });
    assert.equal(r.stdout.toString(), "still here\n");
    await removePod(pod.id, [runner, exiter]);
  });

  test("the shim SIGKILLed: a new shim re-adopts the runsc sub-containers; exec, kill of an exec and stop still work", async () => {
    const pod = await runscPod("gv-shimkill");
    const a = await run(pod, "a", ["sleep", "1000"]);
    const tty = await env.runContainer(pod, "t", ["sh", "-c", "echo tty-before; sleep 1000"], { tty: true });
    ids.add(tty);
    const shims = () => processesNaming([env.d.socket], [env.d.pid]).filter((p) => p.cmd.includes("-berth-serve"));
    const [shim] = shims();
    assert.ok(shim, "a serving shim");
    process.kill(shim.pid, "SIGKILL");
    await until(() => !existsSync(`/proc/${shim.pid}`), "the shim to die", 10_000);
    await until(() => shims().some((p) => p.pid !== shim.pid), "a restarted shim", 20_000);

    for (const cid of [a, tty]) {
      const s = await until(async () => (await env.d.rt.containerStatus({ containerId: cid })).status, "status");
      assert.equal(s.state, ContainerState.CONTAINER_RUNNING, `${cid} still running`);
    }
    const r = await env.d.rt.execSync({ containerId: a, cmd: ["echo", "adopted"], timeout: 30n });
    assert.equal(r.stdout.toString(), "adopted\n");
    await assert.rejects(
      env.d.rt.execSync({ containerId: a, cmd: ["sleep", "1000"], timeout: 2n }, { deadlineMs: 60_000 }),
      (e) => grpcCode(e) === 4,
    );
    // only the container's own `sleep 1000` is left
    const sleeps = async () => ((await psIn(a)).match(/sleep 1000/g) ?? []).length;
    await until(async () => (await sleeps()) === 1, "the timed-out exec to end", 10_000);
    // The adopted container's exit is still seen (stop sends SIGTERM to sleep: 143).
    await env.d.rt.stopContainer({ containerId: a, timeout: 10n }, { deadlineMs: 60_000 });
    const s = await exited(a);
    assert.equal(s.exitCode, 143);
    await removePod(pod.id, [a, tty]);
  });
});
