// A berthd for CRI pod/container tests: a private root/state/socket, a private CNI network
// (its own bridge, subnet and host-local data dir), busybox images built from Debian's
// busybox-static and pushed to a real test registry, then pulled through the CRI.
//
//   const env = await startCriEnv({ bridge: "berthcri0", subnet: "10.234.0.0/24" });
//   t.after(() => env.stop());      // stops berthd, asserts nothing of berth's is left
//   const pod = await env.runPod("web");
import { execFileSync } from "node:child_process";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ContainerConfig, PodSandboxConfig } from "../../src/gen/cri/runtime/v1/api.js";
import { buildImage, makeLayer, pushLayout, writeOciLayout, type EntrySpec } from "./images.js";
import { startDaemon, type TestDaemon } from "./daemon.js";
import { startRegistry, type TestRegistry } from "./registry.js";
import { vethPeerHolders } from "./veth-holder.js";

type DeepPartial<T> = T extends bigint | string | number | boolean | Buffer | undefined
  ? T
  : T extends (infer E)[]
    ? DeepPartial<E>[]
    : T extends object
      ? { [K in keyof T]?: DeepPartial<T[K]> }
      : T;

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function until<T>(fn: () => T | Promise<T>, what: string, timeoutMs = 20_000): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** Every busybox applet as a symlink, a passwd/group with user berth (1000). */
export function fullBusyboxEntries(): EntrySpec[] {
  const busybox = readFileSync("/bin/busybox");
  const applets = execFileSync("/bin/busybox", ["--list"], { encoding: "utf8" })
    .split("\n")
    .filter((a) => a && a !== "busybox" && !a.includes("/"));
  return [
    { name: "bin/", type: "directory" },
    { name: "bin/busybox", content: busybox, mode: 0o755 },
    ...applets.map((a) => ({ name: `bin/${a}`, type: "symlink" as const, linkname: "busybox" })),
    { name: "etc/", type: "directory" },
    { name: "etc/passwd", content: "root:x:0:0:root:/root:/bin/sh\nberth:x:1000:1000:berth:/home/berth:/bin/sh\n" },
    { name: "etc/group", content: "root:x:0:\nberth:x:1000:\nextra:x:2000:berth\n" },
    { name: "tmp/", type: "directory", mode: 0o1777 },
    { name: "root/", type: "directory", mode: 0o700 },
    { name: "www/", type: "directory" },
    { name: "www/index.html", content: "hello from berth\n" },
    { name: "home/berth/", type: "directory", uid: 1000, gid: 1000, mode: 0o750 },
  ];
}

export interface TestImages {
  registry: TestRegistry;
  /** busybox running as root */
  busybox: string;
  /** the same with USER berth and STOPSIGNAL SIGUSR1 */
  busyboxUser: string;
  stop(): Promise<void>;
}

let shared: Promise<TestImages> | undefined;

/** One registry with the test images per test process. */
export function testImages(): Promise<TestImages> {
  shared ??= (async () => {
    const registry = await startRegistry();
    const dir = mkdtempSync(join(tmpdir(), "berth-cri-img-"));
    const layer = await makeLayer(fullBusyboxEntries());
    const env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"];
    const root = buildImage([layer], { config: { Env: env, Cmd: ["/bin/sh"] } });
    const user = buildImage([layer], { config: { Env: env, Cmd: ["/bin/sh"], User: "berth", StopSignal: "SIGUSR1" } });
    await writeOciLayout(dir, [
      { tag: "root", image: root },
      { tag: "user", image: user },
    ]);
    const busybox = `${registry.host}/test/busybox:1`;
    const busyboxUser = `${registry.host}/test/busybox-user:1`;
    await pushLayout(dir, "root", busybox);
    await pushLayout(dir, "user", busyboxUser);
    rmSync(dir, { recursive: true, force: true });
    return {
      registry,
      busybox,
      busyboxUser,
      stop: async () => {
        await registry.stop();
      },
    };
  })();
  return shared;
}

export interface CriEnvOptions {
  bridge: string;
  /** e.g. "10.234.0.0/24" */
  subnet: string;
  /** extra TOML appended to the config */
  config?: string;
  /** runtime handler used as the default ("runc": berth's shim; "runc-v2": containerd's) */
  defaultHandler?: string;
  /** CNI plugin directory (default /usr/lib/cni) */
  cniBinDir?: string;
  /** the directory of the runtime handlers' runc roots (default the daemon's own dir) */
  runtimeRoot?: string;
}

export interface CriEnv {
  d: TestDaemon;
  images: TestImages;
  opts: CriEnvOptions;
  logDir: string;
  podConfig(name: string, extra?: DeepPartial<PodSandboxConfig>): DeepPartial<PodSandboxConfig>;
  runPod(
    name: string,
    extra?: DeepPartial<PodSandboxConfig>,
    handler?: string,
  ): Promise<{ id: string; config: DeepPartial<PodSandboxConfig> }>;
  containerConfig(name: string, args: string[], extra?: DeepPartial<ContainerConfig>): DeepPartial<ContainerConfig>;
  /** Creates and starts a container; returns its id. */
  runContainer(
    pod: { id: string; config: DeepPartial<PodSandboxConfig> },
    name: string,
    args: string[],
    extra?: DeepPartial<ContainerConfig>,
  ): Promise<string>;
  /** Restarts berthd on the same root/state/socket (after kill(), or a graceful stop). */
  restart(): Promise<void>;
  /** Removes every pod, stops berthd and checks nothing of berth's is left. */
  stop(): Promise<void>;
  /** What of berth's is still on the machine (empty when all is clean). */
  leftovers(): string[];
}

export function daemonConfig(o: CriEnvOptions): string {
  return `
[cni]
conf_dir = "{{dir}}/net.d"
bin_dir = "${o.cniBinDir ?? "/usr/lib/cni"}"

[runtime]
default_runtime_name = "${o.defaultHandler ?? "runc"}"

[runtime.handlers.runc]
runtime_type = "io.containerd.berth.v2"
binary_name = "runc"
root = "${o.runtimeRoot ?? "{{dir}}"}/runc"

[runtime.handlers.runc-v2]
runtime_type = "io.containerd.runc.v2"
binary_name = "runc"
root = "${o.runtimeRoot ?? "{{dir}}"}/runc-v2"

[registry]
config_path = "{{dir}}/certs.d"
${o.config ?? ""}`;
}

function writeCniConfig(dir: string, o: CriEnvOptions): void {
  mkdirSync(join(dir, "net.d"), { recursive: true });
  const gw = o.subnet.replace(/\.0\/\d+$/, ".1");
  writeFileSync(
    join(dir, "net.d", "10-berth-test.conflist"),
    JSON.stringify({
      cniVersion: "1.0.0",
      name: `berth-test-${o.bridge}`,
      plugins: [
        {
          type: "bridge",
          bridge: o.bridge,
          isGateway: true,
          ipMasq: false,
          hairpinMode: true,
          ipam: {
            type: "host-local",
            ranges: [[{ subnet: o.subnet, gateway: gw }]],
            routes: [{ dst: "0.0.0.0/0" }],
            dataDir: join(dir, "ipam"),
          },
        },
        { type: "portmap", capabilities: { portMappings: true } },
      ],
    }),
  );
}

export async function startCriEnv(o: CriEnvOptions): Promise<CriEnv> {
  const images = await testImages();
  // The daemon helper makes the dir; the CNI config must exist before berthd starts so
  // berth does not write its default network. Pass a state path we control for restarts.
  const dir = mkdtempSync(join(tmpdir(), "berth-cri-"));
  // Traversable (not listable) like berthd's state dir: the processes of a pod with a user
  // namespace run as unprivileged host ids and must reach their rootfs below it.
  chmodSync(dir, 0o711);
  writeCniConfig(dir, o);
  const start = () => startDaemon({ config: daemonConfig(o), readyTimeoutMs: 60_000, dir, keepDir: true });
  let d: TestDaemon;
  try {
    d = await start();
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const logDir = join(d.dir, "logs");
  const created = { ids: new Set<string>() };

  const env: CriEnv = {
    d,
    images,
    opts: o,
    logDir,
    podConfig(name, extra = {}) {
      return {
        metadata: { name, namespace: "berth-test", uid: `${name}-uid`, attempt: 0 },
        hostname: name,
        logDirectory: join(logDir, name),
        linux: {},
        ...extra,
      };
    },
    async runPod(name, extra = {}, handler = "") {
      const config = env.podConfig(name, extra);
      const r = await env.d.rt.runPodSandbox({ config, runtimeHandler: handler }, { deadlineMs: 120_000 });
      created.ids.add(r.podSandboxId);
      return { id: r.podSandboxId, config };
    },
    containerConfig(name, args, extra = {}) {
      return {
        metadata: { name, attempt: 0 },
        image: { image: images.busybox },
        args,
        logPath: `${name}.log`,
        linux: {},
        ...extra,
      };
    },
    async runContainer(pod, name, args, extra = {}) {
      const { containerId } = await env.d.rt.createContainer(
        { podSandboxId: pod.id, config: env.containerConfig(name, args, extra), sandboxConfig: pod.config },
        { deadlineMs: 120_000 },
      );
      created.ids.add(containerId);
      await env.d.rt.startContainer({ containerId }, { deadlineMs: 120_000 });
      return containerId;
    },
    async restart() {
      await env.d.exited;
      d = await start();
      env.d = d;
    },
    async stop() {
      const pods = await env.d.rt.listPodSandbox({}).catch(() => ({ items: [] }));
      for (const p of pods.items) {
        await env.d.rt.stopPodSandbox({ podSandboxId: p.id }, { deadlineMs: 120_000 }).catch(() => {});
        await env.d.rt.removePodSandbox({ podSandboxId: p.id }, { deadlineMs: 120_000 }).catch(() => {});
      }
      await env.d.stop();
      // With every pod removed and berthd stopped, berth's shim holds no task: it idles out
      // later, so the test ends it. One still holding a task (a container's bundle open, or a
      // monitor child) would never exit: that is left behind.
      const left = [...env.leftovers(), ...berthShimsHoldingTasks(env.d.socket, env.d.state)];
      // A stopped berthd has deleted everything it moved to its trash (cri/trash.ts).
      const trash = join(env.d.state, "trash");
      if (existsSync(trash)) for (const f of readdirSync(trash)) left.push(`trash entry ${join(trash, f)}`);
      rmSync(dir, { recursive: true, force: true });
      // The bridge plugin creates the test's bridge and never deletes it: the test does.
      try {
        execFileSync("ip", ["link", "del", o.bridge], { stdio: "ignore" });
      } catch {
        // never created
      }
      if (left.length > 0) throw new Error(`berth left things behind:\n${left.join("\n")}`);
    },
    leftovers() {
      const out: string[] = [];
      const netnsDir = join(env.d.state, "netns");
      if (existsSync(netnsDir)) for (const f of readdirSync(netnsDir)) out.push(`netns ${join(netnsDir, f)}`);
      try {
        const links = execFileSync("ip", ["-o", "link", "show", "master", o.bridge], {
          encoding: "utf8",
          stdio: ["ignore", "pipe", "ignore"],
        }).trim();
        if (links) {
          out.push(`veths on ${o.bridge}: ${links}`);
          for (const l of links.split("\n")) {
            const name = l.split(":")[1]?.trim() ?? "";
            out.push(`  veth ${name}: ${vethPeerHolders(name)}`);
          }
        }
      } catch {
        // no bridge: nothing attached
      }
      const ipam = join(env.d.dir, "ipam");
      if (existsSync(ipam)) {
        for (const net of readdirSync(ipam)) {
          for (const f of readdirSync(join(ipam, net))) {
            if (/^\d+\.\d+\.\d+\.\d+$/.test(f)) out.push(`IP allocation ${f}`);
          }
        }
      }
      for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
        const mp = line.split(" ")[4];
        if (mp && mp.startsWith(env.d.dir)) out.push(`mount ${mp}`);
      }
      for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
        try {
          const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
          if (cmd.some((a) => a.includes("containerd-shim")) && cmd.includes(env.d.socket))
            out.push(`shim pid ${pid}: ${cmd.join(" ")}`);
        } catch {
          // gone
        }
      }
      for (const id of created.ids) {
        for (const ctl of ["memory", "cpu,cpuacct", "pids"]) {
          const p = join("/sys/fs/cgroup", ctl, "berth", id);
          if (existsSync(p)) out.push(`cgroup ${p}`);
        }
      }
      return out;
    },
  };
  return env;
}

/** A running container's host pid, from verbose ContainerStatus. */
export async function containerPid(env: CriEnv, cid: string): Promise<number> {
  const r = await env.d.rt.containerStatus({ containerId: cid, verbose: true });
  return (JSON.parse(r.info.info!) as { pid: number }).pid;
}

/** The parent pid of `pid` (from /proc/PID/stat, past the command name). */
export function ppid(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
}

/**
 * berth's shims serving the daemon at `socket` (node running dist/src/shim/main.js), all
 * SIGKILLed; those that still held a task (an open file in the daemon's bundles, or a child
 * such as a monitor) are returned as left behind.
 */
function berthShimsHoldingTasks(socket: string, state: string): string[] {
  const out: string[] = [];
  const bundles = join(state, "bundles") + "/";
  for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
    let cmd: string[];
    try {
      cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
    } catch {
      continue; // gone
    }
    if (!cmd.some((a) => a.endsWith("/shim/main.js")) || !cmd.includes(socket)) continue;
    const held: string[] = [];
    try {
      for (const fd of readdirSync(`/proc/${pid}/fd`)) {
        const target = readlinkOrEmpty(`/proc/${pid}/fd/${fd}`);
        if (target.startsWith(bundles)) held.push(target);
      }
      for (const t of readdirSync(`/proc/${pid}/task`)) {
        const kids = readFileSync(`/proc/${pid}/task/${t}/children`, "utf8").trim();
        if (kids) held.push(`children ${kids}`);
      }
    } catch {
      continue; // exited meanwhile
    }
    if (held.length > 0) out.push(`berth shim pid ${pid} still holding a task (${held.join(", ")}): ${cmd.join(" ")}`);
    try {
      process.kill(Number(pid), "SIGKILL");
    } catch {
      // gone
    }
  }
  return out;
}

function readlinkOrEmpty(path: string): string {
  try {
    return readlinkSync(path);
  } catch {
    return "";
  }
}
