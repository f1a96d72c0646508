// `containerd-shim-berth-v2 delete`: containerd's cleanup of a task whose shim is gone (or
// whose create failed). Force-deletes the container, unmounts its rootfs, drops the
// shim's records, and prints a DeleteResponse with the exit status the monitor recorded
// (137, as containerd's runc shim reports, when there is none).
import { readdir, rm } from "node:fs/promises";
import { join } from "node:path";

import { DeleteResponse } from "../gen/containerd/runtime/v2/task/shim.js";
import type { ShimFlags } from "./flags.js";
import { readExitFile } from "./monitor.js";
import { unmountAll } from "./mounts.js";
import { groupId, processStateDir, socketDir } from "./paths.js";
import { loadRecord, toTimestamp } from "./process.js";
import { OciRuntime, runtimeLogPath, type RuntimeConfig } from "./runtime.js";

export async function deleteTask(flags: ShimFlags): Promise<Buffer> {
  const bundle = flags.bundle || process.cwd();
  const root = socketDir();
  const group = groupId(flags.namespace, flags.address);
  const stateDir = processStateDir(root, group, flags.id, "");
  const record = await loadRecord(stateDir);
  const base = process.env.BERTH_SHIM_RUNTIME_ROOT ?? "/run/berth";
  const cfg: RuntimeConfig = record?.runtime ?? {
    binary: "runc",
    root: join(base, "runc", flags.namespace),
    systemdCgroup: false,
    noPivotRoot: false,
    noNewKeyring: false,
    criuPath: "",
  };
  const runtime = new OciRuntime(cfg, runtimeLogPath(stateDir));
  await runtime.delete(flags.id, true).catch(() => {});
  try {
    unmountAll(join(bundle, "rootfs"));
  } catch {
    // nothing mounted
  }
  const exit = await readExitFile(stateDir);
  // the task's exec records too
  const pdir = join(root, group, "p");
  for (const name of await readdir(pdir).catch(() => [] as string[])) {
    const r = await loadRecord(join(pdir, name));
    if (r?.id === flags.id) await rm(join(pdir, name), { recursive: true, force: true });
  }
  await rm(stateDir, { recursive: true, force: true });
  const now = Date.now();
  return Buffer.from(
    DeleteResponse.encode({
      pid: record?.pid ?? 0,
      exitStatus: exit?.status ?? 137,
      exitedAt: toTimestamp(exit) ?? { seconds: BigInt(Math.floor(now / 1000)), nanos: (now % 1000) * 1e6 },
    }).finish(),
  );
}
