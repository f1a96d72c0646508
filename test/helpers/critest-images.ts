// The images critest pulls, served offline: test/images/build.sh builds a stand-in for each
// (an OCI layout cached outside the checkout), a real docker-registry on 127.0.0.1 gets them
// under 127.0.0.1:PORT/<upstream-host>/<repo>:<tag>, and a hosts.toml per upstream host sends
// berthd there (containerd's hosts.toml layout, read through `[registry] config_path`), with
// no fallback to the upstream registry.
//
//   const images = await startCritestImages(join(dir, "certs.d"));
//   // berthd config: [registry] config_path = images.configPath
//   await images.stop();
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT } from "./daemon.js";
import { pushLayout } from "./images.js";
import { startRegistry, type TestRegistry } from "./registry.js";

export interface CritestImages {
  registry: TestRegistry;
  /** the hosts.toml directory to give berthd as registry.config_path */
  configPath: string;
  /** every upstream reference served (e.g. "registry.k8s.io/pause:3.9") */
  references: string[];
  stop(): Promise<void>;
}

/** TAG -> upstream references, from test/images/critest-images.txt. */
export function critestImageList(): Map<string, string[]> {
  const text = readFileSync(join(REPO_ROOT, "test/images/critest-images.txt"), "utf8");
  const out = new Map<string, string[]>();
  for (const line of text.split("\n")) {
    const words = line.trim().split(/\s+/);
    if (!words[0] || words[0].startsWith("#")) continue;
    out.set(words[0], words.slice(1));
  }
  return out;
}

/** Builds the stand-ins if their sources changed; returns the OCI layout's path. */
export function buildCritestImages(): string {
  return execFileSync("bash", [join(REPO_ROOT, "test/images/build.sh")], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
    timeout: 10 * 60_000,
  }).trim();
}

/** The registry host of a reference ("registry.k8s.io/pause:3.9" -> "registry.k8s.io"). */
function upstreamHost(ref: string): string {
  return ref.slice(0, ref.indexOf("/"));
}

/** Starts a registry holding every stand-in and writes the mirror config into `configPath`. */
export async function startCritestImages(configPath: string): Promise<CritestImages> {
  const layout = buildCritestImages();
  const list = critestImageList();
  const registry = await startRegistry();
  try {
    const pushes = [...list].flatMap(([tag, refs]) => refs.map((ref) => ({ tag, ref })));
    // skopeo copies are mostly waiting on the registry: a few repositories at a time. The tags
    // of one repository go one after another: docker-registry's filesystem driver rewrites a
    // repository's blob link in place, and a push checking that link while another push of the
    // same repository writes it got a 500 ("failed to read from destination repository").
    const byRepo = new Map<string, typeof pushes>();
    for (const p of pushes) {
      const repo = p.ref.replace(/[:@][^/]*$/, "");
      byRepo.set(repo, [...(byRepo.get(repo) ?? []), p]);
    }
    const groups = [...byRepo.values()];
    for (let i = 0; i < groups.length; i += 4) {
      await Promise.all(
        groups.slice(i, i + 4).map(async (group) => {
          for (const p of group) await pushLayout(layout, p.tag, `${registry.host}/${p.ref}`);
        }),
      );
    }
    const hosts = new Set(pushes.map((p) => upstreamHost(p.ref)));
    for (const host of hosts) {
      // `server` replaces the upstream registry: a name missing here fails instead of going out
      const url = `http://${registry.host}/v2/${host}`;
      mkdirSync(join(configPath, host), { recursive: true });
      writeFileSync(
        join(configPath, host, "hosts.toml"),
        `# berth test: ${host} served only by the loopback test registry\n` +
          `server = "${url}"\noverride_path = true\ncapabilities = ["pull", "resolve"]\n`,
      );
    }
    return {
      registry,
      configPath,
      references: pushes.map((p) => p.ref),
      stop: () => registry.stop(),
    };
  } catch (err) {
    await registry.stop();
    throw err;
  }
}
