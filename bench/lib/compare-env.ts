// What the side-by-side benchmark gives every runtime alike: one loopback registry with the
// same images (busybox, pause, a small and a big image), the same registry mirror config
// (containerd's hosts.toml layout, which berthd reads too), the same CNI conflist shape
// (bridge + host-local + portmap, ipMasq off) on a bridge and subnet of its own, and the
// clean-up of what a runtime leaves on the host (mounts, cgroups, bridges).
import { execFileSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildCritestImages } from "../../test/helpers/critest-images.js";
import { pushLayout } from "../../test/helpers/images.js";
import { startRegistry, type TestRegistry } from "../../test/helpers/registry.js";
import { pushBigImage, type BigImage } from "./pull.js";

export interface CompareImages {
  registry: TestRegistry;
  busybox: string;
  pause: string;
  small: BigImage;
  big: BigImage;
  stop(): Promise<void>;
}

/**
 * Starts the registry and pushes the images: busybox and pause are the offline stand-ins of
 * test/images (berthd runs its built-in pause, built from the same native/pause source);
 * the small and big images are text-like gzip layers made here (pull.ts).
 */
export async function startCompareImages(bigLayers: number, bigLayerMiB: number): Promise<CompareImages> {
  const layout = buildCritestImages();
  const registry = await startRegistry();
  const made: BigImage[] = [];
  try {
    const busybox = `${registry.host}/bench/busybox:1.29`;
    const pause = `${registry.host}/bench/pause:3.10`;
    await pushLayout(layout, "busybox", busybox);
    await pushLayout(layout, "sandbox-pause", pause);
    const small = await pushBigImage(registry.host, 1, 2, "small");
    made.push(small);
    const big = await pushBigImage(registry.host, bigLayers, bigLayerMiB, "big");
    made.push(big);
    return {
      registry,
      busybox,
      pause,
      small,
      big,
      async stop() {
        for (const m of made) await m.cleanup();
        await registry.stop();
      },
    };
  } catch (err) {
    for (const m of made) await m.cleanup();
    await registry.stop();
    throw err;
  }
}

/** certs.d/<registry host>/hosts.toml: the registry, plain HTTP, for pull and resolve. */
export function writeHostsToml(certsDir: string, registryHost: string): void {
  mkdirSync(join(certsDir, registryHost), { recursive: true });
  writeFileSync(
    join(certsDir, registryHost, "hosts.toml"),
    `# berth bench: the loopback registry, plain HTTP\nserver = "http://${registryHost}"\n\n` +
      `[host."http://${registryHost}"]\n  capabilities = ["pull", "resolve"]\n`,
  );
}

export interface Network {
  bridge: string;
  /** a /24, e.g. 10.234.40.0/24 */
  subnet: string;
}

/** The conflist every runtime gets (only the bridge, subnet and IPAM data dir differ). */
export function conflist(net: Network, ipamDir: string): object {
  return {
    cniVersion: "1.0.0",
    name: `berth-bench-${net.bridge}`,
    plugins: [
      {
        type: "bridge",
        bridge: net.bridge,
        isGateway: true,
        ipMasq: false,
        hairpinMode: true,
        ipam: {
          type: "host-local",
          ranges: [[{ subnet: net.subnet, gateway: net.subnet.replace(/\.0\/\d+$/, ".1") }]],
          routes: [{ dst: "0.0.0.0/0" }],
          dataDir: ipamDir,
        },
      },
      { type: "portmap", capabilities: { portMappings: true } },
    ],
  };
}

export function writeConflist(confDir: string, net: Network, ipamDir: string): void {
  mkdirSync(confDir, { recursive: true });
  writeFileSync(join(confDir, "10-berth-bench.conflist"), JSON.stringify(conflist(net, ipamDir)));
}

/** Deletes a bridge the bridge plugin made (it never deletes it itself). */
export function deleteLink(name: string): void {
  try {
    execFileSync("ip", ["link", "del", name], { stdio: "ignore" });
  } catch {
    // never created
  }
}

/** Unmounts, deepest first, every mount under `dir` (left by a killed runtime). */
export function unmountUnder(dir: string): string[] {
  const mounts = readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((l) => l.split(" ")[4]?.replace(/\\040/g, " "))
    .filter((m): m is string => !!m && (m === dir || m.startsWith(`${dir}/`)))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) {
    try {
      execFileSync("umount", ["-l", m], { stdio: "ignore" });
    } catch {
      // gone meanwhile
    }
  }
  return mounts;
}

/** A runtime's run dir: where it keeps the runtime state a node keeps under /run. */
export interface RunDir {
  path: string;
  /** Unmounts it (with anything a runtime left mounted inside) and removes it. */
  close(): void;
}

/**
 * A fresh directory for one runtime's runtime state: berthd's --state and its handlers' runc
 * root, containerd's state dir and its runc root. On a node these live under /run, a tmpfs, so
 * by default the directory is a tmpfs of its own. On this machine /run is on the root file
 * system (ext4 without a journal, whose inode allocator passes over every inode deleted in the
 * last half minute or more, so each file a runtime makes there costs more the more pods were
 * torn down just before); `onDisk` keeps the directory there, for a run of that layout
 * (--state-on-disk). Each runtime has its own, so one's churn never slows another's.
 */
export function runDir(prefix: string, onDisk = false): RunDir {
  const path = mkdtempSync(join(tmpdir(), `${prefix}-run-`));
  if (!onDisk) {
    try {
      execFileSync("mount", ["-t", "tmpfs", "-o", "mode=0711,size=512m", "tmpfs", path], { stdio: "pipe" });
    } catch (err) {
      rmdirSync(path);
      throw new Error(`cannot mount a tmpfs on ${path}: ${(err as Error).message}`);
    }
  }
  return {
    path,
    close() {
      // lazily: a mount still busy goes with its last user
      unmountUnder(path);
      rmSync(path, { recursive: true, force: true });
    },
  };
}

/** Removes a cgroupfs parent (and empty children) from every v1 hierarchy and the v2 tree. */
export function removeCgroupParent(parent: string): void {
  const rmTree = (p: string) => {
    if (!existsSync(p)) return;
    for (const e of readdirSync(p, { withFileTypes: true })) if (e.isDirectory()) rmTree(join(p, e.name));
    try {
      rmdirSync(p);
    } catch {
      // a process still in it, or not a cgroup dir
    }
  };
  for (const ctl of readdirSync("/sys/fs/cgroup")) rmTree(join("/sys/fs/cgroup", ctl, parent));
}
