// The bare CNI floor: the conflist every runtime gets (bridge + host-local + portmap), run by
// hand as libcni would (each plugin exec'd with the previous result, DEL in reverse order),
// into a netns made beforehand. What a runtime adds on top of it is its own cost.
import { execFile, execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { conflist, deleteLink, type Network } from "./compare-env.js";
import { timed } from "./stats.js";

const CNI_PATH = "/usr/lib/cni";

interface PluginConf {
  type: string;
  [k: string]: unknown;
}

function exec(plugin: string, env: Record<string, string>, stdin: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(join(CNI_PATH, plugin), { env: { ...env, PATH: process.env.PATH ?? "" } }, (err, stdout) =>
      err ? reject(new Error(`${plugin} ${env.CNI_COMMAND}: ${stdout || err.message}`)) : resolve(stdout),
    );
    child.stdin!.end(stdin);
  });
}

export interface CniFloor {
  addMs: number[];
  delMs: number[];
}

export async function measureCniFloor(net: Network, samples: number): Promise<CniFloor> {
  const dir = mkdtempSync(join(tmpdir(), "berth-bench-cni-"));
  const list = conflist(net, join(dir, "ipam")) as { cniVersion: string; name: string; plugins: PluginConf[] };
  const out: CniFloor = { addMs: [], delMs: [] };
  const netns = `berth-bench-cni-${process.pid}`;
  try {
    for (let i = 0; i < samples; i++) {
      execFileSync("ip", ["netns", "add", netns]);
      const env = {
        CNI_CONTAINERID: `bench-${process.pid}-${i}`,
        CNI_NETNS: `/var/run/netns/${netns}`,
        CNI_IFNAME: "eth0",
        CNI_PATH,
      };
      const conf = (p: PluginConf, prev?: unknown) =>
        JSON.stringify({
          ...p,
          cniVersion: list.cniVersion,
          name: list.name,
          // what containerd and berthd pass for the portMappings capability of a pod without ports
          ...(p.capabilities ? { runtimeConfig: { portMappings: [] } } : {}),
          ...(prev ? { prevResult: prev } : {}),
        });
      let result: unknown;
      const [add] = await timed(async () => {
        result = undefined;
        for (const p of list.plugins)
          result = JSON.parse(await exec(p.type, { ...env, CNI_COMMAND: "ADD" }, conf(p, result)));
      });
      out.addMs.push(add);
      const [del] = await timed(async () => {
        for (const p of [...list.plugins].reverse())
          await exec(p.type, { ...env, CNI_COMMAND: "DEL" }, conf(p, result));
      });
      out.delMs.push(del);
      execFileSync("ip", ["netns", "del", netns]);
    }
    return out;
  } finally {
    try {
      execFileSync("ip", ["netns", "del", netns], { stdio: "ignore" });
    } catch {
      // deleted already
    }
    deleteLink(net.bridge);
    rmSync(dir, { recursive: true, force: true });
  }
}
