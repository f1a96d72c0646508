// The kernel's own record of an OOM kill, for when the shim's TaskOOM event was missed.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { ContainerDeps } from "./deps.js";

/** Whether the kernel OOM-killed in the container's memory cgroup (v1 memory.oom_control). */
export async function cgroupOomKilled(d: Pick<ContainerDeps, "bundles">, id: string): Promise<boolean> {
  try {
    const cg = d.bundles.tryReadSpec(id)?.linux.cgroupsPath;
    if (!cg || cg.includes(":")) return false;
    const text = await readFile(join("/sys/fs/cgroup/memory", cg, "memory.oom_control"), "utf8");
    const m = /oom_kill (\d+)/.exec(text);
    return m ? Number(m[1]) > 0 : false;
  } catch {
    return false;
  }
}
