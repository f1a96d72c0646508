// A real kubelet (built from k8s.io/kubernetes by scripts/go-tools.sh, test/go/kubelet) run
// standalone against a test berthd: no API server, static pods from a private manifest dir,
// everything it writes under a private temp dir, and nothing of the host's state touched.
//
//   const k = await startKubelet({ socket: d.socket });
//   k.addPod({ metadata: { name: "web" }, spec: { containers: [...] } });
//   ...
//   await k.stop();       // kubelet exits; the pods it started keep running in berthd
//   await k.cleanup();    // after berthd removed the pods: kubelet's cgroups and files go
//
// kubelet hard-codes a few host paths and sysctls whatever its configuration says, so it runs
// in a mount namespace of its own (slave propagation: it still sees the host's and berthd's
// mounts, and nothing it mounts reaches the host) where
//  - /var/lib and /var/log are empty tmpfs: its device-plugin socket dir
//    (/var/lib/kubelet/device-plugins) and the /var/log/containers symlinks land there;
//  - the six kernel tunables it would otherwise rewrite on the host (vm.overcommit_memory,
//    kernel.panic, kernel.panic_on_oops, ...) read as the values it wants, from files bound over
//    /proc/sys, so it changes none of them (protectKernelDefaults would refuse to start instead).
// Its pod cgroups live under a cgroup root of its own (/berth-kubelet), removed by cleanup().
import { spawn, type ChildProcess } from "node:child_process";
import {
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  rmdirSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { goTool } from "./go-tools.js";
import { freePort } from "./registry.js";

/** The node name kubelet runs as: static pod names get "-<node>" appended. */
export const NODE_NAME = "berth-kubelet-node";
/** kubelet's cgroup root (cgroupfs driver): kubepods and the pod cgroups go below it. */
export const CGROUP_ROOT = "/berth-kubelet";

/** What kubelet wants of these sysctls (pkg/kubelet/cm setupKernelTunables), bound over /proc/sys. */
const KERNEL_TUNABLES: Record<string, number> = {
  "vm/overcommit_memory": 1,
  "vm/panic_on_oom": 0,
  "kernel/panic": 10,
  "kernel/panic_on_oops": 1,
  "kernel/keys/root_maxkeys": 1000000,
  "kernel/keys/root_maxbytes": 25000000,
};

export interface KubeletOptions {
  /** berthd's CRI socket. */
  socket: string;
  /** Extra KubeletConfiguration fields (override the helper's). */
  config?: Record<string, unknown>;
  /** The resolv.conf kubelet gives pods with dnsPolicy Default. */
  resolvConf?: string;
}

export interface TestKubelet {
  dir: string;
  rootDir: string;
  manifestDir: string;
  podLogsDir: string;
  logPath: string;
  resolvConfPath: string;
  pid: number;
  /** Writes a static pod manifest (a v1 Pod object, namespace default "berth-test"); returns the pod's name as kubelet runs it. */
  addPod(pod: StaticPod): string;
  /** Removes a static pod's manifest (kubelet then tears the pod down). */
  removePod(name: string): void;
  /** The manifests still in the static pod dir (pod names as written). */
  pods(): string[];
  /** The last `lines` lines of kubelet's own log. */
  logTail(lines?: number): string;
  /** Whether kubelet still runs. */
  running(): boolean;
  /** SIGTERM (SIGKILL after 20 s) and wait. The pods it started keep running. Idempotent. */
  stop(): Promise<void>;
  /** After stop() and once berthd removed the pods: kubelet's cgroups, any mount left under its dir, the dir. */
  cleanup(): Promise<void>;
}

export interface StaticPod {
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  spec: Record<string, unknown>;
}

const live = new Set<ChildProcess>();
process.on("exit", () => {
  for (const c of live) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
});

/** Every v1 cgroup hierarchy and the unified one (hybrid hosts), as mounted under /sys/fs/cgroup. */
function cgroupHierarchies(): string[] {
  return readdirSync("/sys/fs/cgroup")
    .map((c) => join("/sys/fs/cgroup", c))
    .filter((p) => {
      try {
        return statSync(p).isDirectory() && !statSync(p).isSymbolicLink();
      } catch {
        return false;
      }
    });
}

/** Creates kubelet's cgroup root in every hierarchy (kubelet refuses a root that does not exist). */
function makeCgroupRoot(): void {
  for (const h of cgroupHierarchies()) {
    const p = join(h, CGROUP_ROOT);
    mkdirSync(p, { recursive: true });
    // A new v1 cpuset cgroup has no CPUs or memory nodes: give it its parent's.
    if (existsSync(join(p, "cpuset.cpus")) && readFileSync(join(p, "cpuset.cpus"), "utf8").trim() === "") {
      writeFileSync(join(p, "cpuset.cpus"), readFileSync(join(h, "cpuset.cpus")));
      writeFileSync(join(p, "cpuset.mems"), readFileSync(join(h, "cpuset.mems")));
    }
  }
}

/** Removes a cgroup subtree bottom-up (cgroup dirs are removed with rmdir; their files go with them). */
function removeCgroupTree(p: string, left: string[]): void {
  let entries: string[];
  try {
    entries = readdirSync(p, { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => e.name);
  } catch {
    return;
  }
  for (const e of entries) removeCgroupTree(join(p, e), left);
  try {
    rmdirSync(p);
  } catch (err) {
    left.push(`${p}: ${(err as Error).message}`);
  }
}

/** Mount points below `dir` in this (the host's) mount namespace, deepest first. */
function mountsUnder(dir: string): string[] {
  const out: string[] = [];
  for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
    const mp = line.split(" ")[4]?.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (mp && (mp === dir || mp.startsWith(`${dir}/`))) out.push(mp);
  }
  return out.sort((a, b) => b.length - a.length);
}

// The mount namespace set-up before kubelet runs (see the top of this file). $1 is the dir
// holding the sysctl value files; the rest is kubelet's command line.
const WRAPPER = `set -e
vals=$1; shift
mount -t tmpfs -o mode=0755,size=64m berth-kubelet /var/lib
mount -t tmpfs -o mode=0755,size=64m berth-kubelet /var/log
for f in ${Object.keys(KERNEL_TUNABLES).join(" ")}; do
  mount --bind -o ro "$vals/$(echo "$f" | tr / _)" "/proc/sys/$f"
done
exec "$@"
`;

export async function startKubelet(opts: KubeletOptions): Promise<TestKubelet> {
  const kubelet = goTool("kubelet");
  const dir = mkdtempSync(join(tmpdir(), "berth-kubelet-"));
  const rootDir = join(dir, "root");
  const manifestDir = join(dir, "manifests");
  const podLogsDir = join(dir, "pod-logs");
  const sysctlDir = join(dir, "sysctl");
  const logPath = join(dir, "kubelet.log");
  const resolvConfPath = join(dir, "resolv.conf");
  for (const d of [rootDir, manifestDir, podLogsDir, sysctlDir]) mkdirSync(d, { recursive: true });
  for (const [name, v] of Object.entries(KERNEL_TUNABLES))
    writeFileSync(join(sysctlDir, name.replaceAll("/", "_")), `${v}\n`);
  writeFileSync(resolvConfPath, opts.resolvConf ?? "nameserver 127.0.0.1\nsearch berth.test\n");
  makeCgroupRoot();

  const healthzPort = await freePort();
  const config = {
    kind: "KubeletConfiguration",
    apiVersion: "kubelet.config.k8s.io/v1beta1",
    // The socket goes in the configuration, not on the command line: the leak checks count
    // every process naming berthd's socket as berth's.
    containerRuntimeEndpoint: `unix://${opts.socket}`,
    staticPodPath: manifestDir,
    fileCheckFrequency: "2s",
    syncFrequency: "10s",
    podLogsDir,
    resolvConf: resolvConfPath,
    cgroupDriver: "cgroupfs",
    cgroupRoot: CGROUP_ROOT,
    cgroupsPerQOS: true,
    enforceNodeAllocatable: [],
    failSwapOn: false,
    failCgroupV1: false,
    // Left on (the default): with it off, cadvisor collects no disk usage and kubelet's
    // eviction manager fails every sync on the image filesystem berthd reports (ImageFsInfo).
    localStorageCapacityIsolation: true,
    makeIPTablesUtilChains: false,
    // Root lacks CAP_SYS_RESOURCE here: kubelet could not lower its own oom_score_adj.
    oomScoreAdj: 0,
    // No API server: nobody calls kubelet's server; it listens on loopback only.
    enableServer: false,
    address: "127.0.0.1",
    readOnlyPort: 0,
    healthzBindAddress: "127.0.0.1",
    healthzPort,
    authentication: { anonymous: { enabled: true }, webhook: { enabled: false } },
    authorization: { mode: "AlwaysAllow" },
    volumePluginDir: join(dir, "volume-plugins"),
    // The test machine's disks and memory are shared: no image GC, no eviction.
    imageGCHighThresholdPercent: 100,
    imageGCLowThresholdPercent: 99,
    evictionHard: {
      "memory.available": "1Mi",
      "nodefs.available": "1%",
      "imagefs.available": "1%",
      "nodefs.inodesFree": "1%",
    },
    mergeDefaultEvictionSettings: false,
    registerNode: false,
    ...opts.config,
  };
  const configPath = join(dir, "kubelet-config.json");
  writeFileSync(configPath, JSON.stringify(config, null, 2));

  const args = [
    "--mount",
    "--propagation",
    "slave",
    "sh",
    "-c",
    WRAPPER,
    "sh",
    sysctlDir,
    kubelet,
    "--config",
    configPath,
    "--root-dir",
    rootDir,
    "--cert-dir",
    join(dir, "pki"),
    "--hostname-override",
    NODE_NAME,
    "--v",
    "2",
  ];
  const logFd = openSync(logPath, "a");
  const child = spawn("unshare", args, { cwd: dir, stdio: ["ignore", logFd, logFd] });
  closeSync(logFd);
  live.add(child);
  let exited = false;
  const exit = new Promise<void>((r) =>
    child.once("exit", () => {
      exited = true;
      r();
    }),
  );

  const logTail = (lines = 150) => {
    try {
      return readFileSync(logPath, "utf8").split("\n").slice(-lines).join("\n");
    } catch {
      return "(no kubelet log)";
    }
  };

  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      if (!exited) {
        child.kill("SIGTERM");
        const t = setTimeout(() => child.kill("SIGKILL"), 20_000);
        await exit;
        clearTimeout(t);
      }
      live.delete(child);
    })());

  const k: TestKubelet = {
    dir,
    rootDir,
    manifestDir,
    podLogsDir,
    logPath,
    resolvConfPath,
    pid: child.pid!,
    addPod(pod) {
      const manifest = {
        apiVersion: "v1",
        kind: "Pod",
        ...pod,
        metadata: { namespace: "berth-test", ...pod.metadata },
      };
      // Written aside then renamed: kubelet must never read half a manifest.
      const tmp = join(dir, `${pod.metadata.name}.json`);
      writeFileSync(tmp, JSON.stringify(manifest, null, 2));
      renameSync(tmp, join(manifestDir, `${pod.metadata.name}.json`));
      return `${pod.metadata.name}-${NODE_NAME}`;
    },
    removePod(name) {
      unlinkSync(join(manifestDir, `${name}.json`));
    },
    pods: () => readdirSync(manifestDir).map((f) => f.replace(/\.json$/, "")),
    logTail,
    running: () => !exited,
    stop,
    async cleanup() {
      await stop();
      const left: string[] = [];
      for (const h of cgroupHierarchies()) removeCgroupTree(join(h, CGROUP_ROOT), left);
      // kubelet's own mounts were in its namespace and went with it; anything still mounted
      // here below its dir came from elsewhere (berthd binds kubelet's files into containers).
      for (const mp of mountsUnder(dir)) left.push(`mount ${mp}`);
      // BERTH_KUBELET_LOG=<file> keeps kubelet's whole log for a look after a passing run.
      if (process.env.BERTH_KUBELET_LOG && existsSync(logPath)) copyFileSync(logPath, process.env.BERTH_KUBELET_LOG);
      rmSync(dir, { recursive: true, force: true });
      if (left.length > 0) throw new Error(`kubelet left things behind:\n${left.join("\n")}`);
    },
  };

  // Ready once its healthz answers (or it died: then its log says why).
  const deadline = Date.now() + 120_000;
  for (;;) {
    if (exited) {
      const log = logTail(80);
      await k.cleanup().catch(() => {});
      throw new Error(`kubelet exited before it was healthy:\n${log}`);
    }
    const ok = await fetch(`http://127.0.0.1:${healthzPort}/healthz`)
      .then(async (r) => r.status === 200 && (await r.text()) === "ok")
      .catch(() => false);
    if (ok) break;
    if (Date.now() > deadline) {
      const log = logTail(80);
      await k.cleanup().catch(() => {});
      throw new Error(`kubelet's healthz did not answer ok in time:\n${log}`);
    }
    await sleep(500);
  }
  return k;
}
