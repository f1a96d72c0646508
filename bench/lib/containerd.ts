// A private containerd with its CRI plugin for the side-by-side benchmark: Debian's 1.6
// (/usr/bin/containerd) or 2.4 (test/go/containerd-2.4-cri), each with its own root, state,
// sockets, CNI network, hosts.toml mirror and pause image, and a close() that leaves nothing
// behind (pods through the CRI, then the daemon, its shims, mounts, bridge and cgroups).
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { goTool } from "../../test/helpers/go-tools.js";
import { criClients } from "../../test/helpers/daemon.js";
import {
  deleteLink,
  runDir,
  removeCgroupParent,
  unmountUnder,
  writeConflist,
  writeHostsToml,
  type Network,
} from "./compare-env.js";
import { shimPids } from "./memory.js";

export interface Runtime {
  /** column label */
  name: string;
  socket: string;
  pid: number;
  /** a string in its shims' command lines */
  shimMarker: string;
  /** the pods' cgroup parent */
  cgroupParent: string;
  logDir: string;
  close(): Promise<void>;
}

export type Generation = "1.6" | "2.4";

/**
 * The config of one generation; the CRI keys moved between 1.x (version 2) and 2.x. Both
 * restrict oom_score_adj to containerd's own: the CRI gives the pause container -998, which a
 * root without CAP_SYS_RESOURCE (this host) may not set, so runc init fails (berthd clamps too).
 */
function config(gen: Generation, dir: string, run: string, sock: string, pause: string): string {
  if (gen === "1.6")
    return `version = 2
root = "${dir}/root"
state = "${run}/state"
[grpc]
  address = "${sock}"
[ttrpc]
  address = "${sock}.ttrpc"
[debug]
  level = "info"
[plugins."io.containerd.internal.v1.opt"]
  path = "${dir}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${pause}"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "${run}/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "${dir}/net.d"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "${dir}/certs.d"
`;
  // Version 4 (2.4's own): servers are plugins; no imports from /etc/containerd/conf.d; NRI
  // off (its socket, /var/run/nri/nri.sock, is host-wide and would collide); shim sockets in
  // our dir (at most 42 characters).
  return `version = 4
root = "${dir}/root"
state = "${run}/state"
imports = []
disabled_plugins = ["io.containerd.nri.v1.nri"]
[debug]
  level = "info"
[plugins.'io.containerd.server.v1.grpc']
  address = "${sock}"
[plugins.'io.containerd.server.v1.ttrpc']
  address = "${sock}.ttrpc"
[plugins.'io.containerd.internal.v1.opt']
  path = "${dir}/opt"
[plugins.'io.containerd.shim.v1.manager']
  socket_dir = "${dir}/s"
[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "${pause}"
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = "${dir}/certs.d"
[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        Root = "${run}/runc"
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "${dir}/net.d"
`;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function startContainerd(
  gen: Generation,
  net: Network,
  registryHost: string,
  pause: string,
  log: (msg: string) => void,
  stateOnDisk = false,
): Promise<Runtime> {
  // short: the shim socket dir must stay within 42 characters
  // state and runc root on a tmpfs of its own, as under /run on a node (compare-env.ts)
  const run = runDir(`bcd${gen.replace(".", "")}`, stateOnDisk);
  const dir = mkdtempSync(join(tmpdir(), `bcd${gen.replace(".", "")}-`));
  const sock = join(dir, "c.sock");
  const cgroupParent = `/berth-bench-cd${gen.replace(".", "")}`;
  writeConflist(join(dir, "net.d"), net, join(dir, "ipam"));
  writeHostsToml(join(dir, "certs.d"), registryHost);
  mkdirSync(join(dir, "logs"));
  writeFileSync(join(dir, "config.toml"), config(gen, dir, run.path, sock, pause));
  const bin = gen === "1.6" ? "/usr/bin/containerd" : goTool("containerd-2.4-cri", "containerd");
  // containerd finds containerd-shim-runc-v2 on PATH: 2.4's own shim first for 2.4, Debian's for 1.6
  const path = gen === "1.6" ? process.env.PATH : `${dirname(bin)}:${process.env.PATH}`;
  let output = "";
  const child: ChildProcess = spawn(bin, ["--config", join(dir, "config.toml")], {
    env: { ...process.env, PATH: path },
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout!.on("data", (b: Buffer) => (output = (output + b.toString()).slice(-20_000)));
  child.stderr!.on("data", (b: Buffer) => (output = (output + b.toString()).slice(-20_000)));
  let exited = false;
  const gone = new Promise<void>((res) => child.once("exit", () => ((exited = true), res())));
  const name = `containerd ${gen}`;

  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      if (!exited) {
        // pods first, through the CRI: that tears down their netns, IPs and containers
        const c = criClients(sock);
        try {
          const pods = await c.rt.listPodSandbox({}, { deadlineMs: 30_000 });
          for (const p of pods.items) {
            await c.rt.stopPodSandbox({ podSandboxId: p.id }, { deadlineMs: 120_000 }).catch(() => {});
            await c.rt.removePodSandbox({ podSandboxId: p.id }, { deadlineMs: 120_000 }).catch(() => {});
          }
        } catch (err) {
          log(`${name}: removing pods: ${(err as Error).message}`);
        } finally {
          c.close();
        }
        child.kill("SIGTERM");
        const t = setTimeout(() => child.kill("SIGKILL"), 20_000);
        await gone;
        clearTimeout(t);
      }
      // shims outlive containerd by design; ours are found by our socket in their command line
      for (const pid of shimPids(sock)) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // gone
        }
      }
      await sleep(200);
      const left = [...unmountUnder(dir), ...unmountUnder(run.path).filter((m) => m !== run.path)];
      if (left.length) log(`${name}: unmounted ${left.length} leftover mounts`);
      run.close();
      deleteLink(net.bridge);
      removeCgroupParent(cgroupParent);
      rmSync(dir, { recursive: true, force: true });
    })());

  const deadline = Date.now() + 60_000;
  const c = criClients(sock);
  try {
    for (;;) {
      if (exited) throw new Error(`${name} exited before serving:\n${output}`);
      try {
        await c.rt.version({}, { deadlineMs: 2_000 });
        break;
      } catch (err) {
        if (Date.now() > deadline)
          throw new Error(`${name} did not serve the CRI in time: ${(err as Error).message}\n${output}`);
        await sleep(250);
      }
    }
  } catch (err) {
    c.close();
    await close();
    throw err;
  }
  c.close();
  return { name, socket: sock, pid: child.pid!, shimMarker: sock, cgroupParent, logDir: join(dir, "logs"), close };
}
