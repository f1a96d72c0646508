// The bare-runc floor: what the OCI runtime alone costs on a busybox rootfs, measured in the
// same run as berth so both see the same machine and load.
import { execFile, spawn } from "node:child_process";
import { mkdtempSync, readdirSync, rmdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { makeBundle } from "../../test/helpers/bundle.js";

const run = promisify(execFile);

export interface FloorBundle {
  id: string;
  path: string;
}

export class RuncFloor {
  readonly dir = mkdtempSync(join(tmpdir(), "berth-bench-runc-"));
  readonly root = join(this.dir, "state");
  private n = 0;

  bundle(): FloorBundle {
    const id = `bench-${process.pid}-${this.n++}`;
    const path = join(this.dir, id);
    makeBundle(path, { args: ["sleep", "100000"], cgroupsPath: `/berth-bench/${id}` });
    return { id, path };
  }

  /** `runc run -d`; the container inherits runc's stdio, so it gets /dev/null (a pipe would stay open). */
  runD(b: FloorBundle): Promise<void> {
    return new Promise((resolve, reject) => {
      const child = spawn("runc", ["--root", this.root, "run", "-d", "--bundle", b.path, b.id], { stdio: "ignore" });
      child.once("error", reject);
      child.once("exit", (code) => (code === 0 ? resolve() : reject(new Error(`runc run -d exited with ${code}`))));
    });
  }

  async exec(id: string): Promise<void> {
    await run("runc", ["--root", this.root, "exec", id, "true"], { timeout: 60_000 });
  }

  /** `runc delete -f`: kills and removes the container (what pod removal costs at the bottom). */
  async remove(id: string): Promise<void> {
    await run("runc", ["--root", this.root, "delete", "-f", id]).catch(() => {});
  }

  async close(): Promise<void> {
    const list = await run("runc", ["--root", this.root, "list", "-q"]).catch(() => ({ stdout: "" }));
    for (const id of list.stdout.split("\n").filter(Boolean)) await this.remove(id);
    rmSync(this.dir, { recursive: true, force: true });
    // runc delete removes each container's cgroup; the shared parent is left to us (rmdir: cgroupfs files cannot be unlinked)
    for (const ctl of readdirSync("/sys/fs/cgroup")) {
      try {
        rmdirSync(join("/sys/fs/cgroup", ctl, "berth-bench"));
      } catch {
        // absent, or not a hierarchy
      }
    }
  }
}
